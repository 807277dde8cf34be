"""Webhook URL checks, without network: IP literals, and a patched resolver for names."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from common.urlsafety import (
    HostResolutionError,
    UnsafeUrlError,
    check_webhook_url,
    classify,
    resolve_and_check,
)

STRICT: dict[str, Any] = {"allow_loopback": False, "allow_private": False, "http_allowlist": []}


def fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> None:
    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in answers[host]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("93.184.216.34", "global"),
        ("2606:2800:220:1::1", "global"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),
        ("fd00::1", "private"),
        ("::ffff:10.0.0.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
    ],
)
def test_classify(address: str, kind: str) -> None:
    assert classify(address) == kind


@pytest.mark.parametrize(
    "url",
    [
        "https://10.0.0.1/hooks",
        "https://169.254.169.254/latest/meta-data/",
        "https://127.0.0.1/",
        "https://[::1]:8443/",
        "https://[::ffff:169.254.169.254]/",
        "https://0.0.0.0/",
        "https://224.0.0.1/",
    ],
)
def test_internal_addresses_are_refused(url: str) -> None:
    with pytest.raises(UnsafeUrlError) as caught:
        check_webhook_url(url, **STRICT)
    assert caught.value.code == "invalid_webhook_url"
    assert caught.value.retryable is False


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x", "file:///etc/passwd", "gopher://x/", "example.com/hooks", "https:///x"]
)
def test_bad_schemes_and_hosts(url: str) -> None:
    with pytest.raises(UnsafeUrlError):
        check_webhook_url(url, **STRICT)


def test_flags_allow_loopback_and_private_but_never_link_local() -> None:
    check_webhook_url("https://127.0.0.1/", allow_loopback=True, allow_private=False, http_allowlist=[])
    check_webhook_url("https://10.1.2.3/", allow_loopback=False, allow_private=True, http_allowlist=[])
    with pytest.raises(UnsafeUrlError, match="link-local"):
        check_webhook_url(
            "https://169.254.169.254/", allow_loopback=True, allow_private=True, http_allowlist=[]
        )


def test_plain_http_needs_the_allowlist_or_loopback() -> None:
    with pytest.raises(UnsafeUrlError, match="https"):
        check_webhook_url("http://93.184.216.34/", **STRICT)
    check_webhook_url(
        "http://93.184.216.34/", allow_loopback=False, allow_private=False, http_allowlist=["93.184.216.34"]
    )
    check_webhook_url("http://127.0.0.1:9000/", allow_loopback=True, allow_private=False, http_allowlist=[])
    with pytest.raises(UnsafeUrlError, match="https"):
        check_webhook_url("http://10.0.0.1/", allow_loopback=True, allow_private=True, http_allowlist=[])


def test_names_are_judged_by_every_address(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(
        monkeypatch,
        {
            "hooks.example.com": ["93.184.216.34", "2606:2800:220:1::1"],
            "mixed.example.com": ["93.184.216.34", "10.0.0.7"],
            "rebind.example.com": ["127.0.0.1"],
            "plain.example.com": ["93.184.216.34"],
        },
    )
    assert resolve_and_check("https://hooks.example.com/x", **STRICT) == [
        "93.184.216.34",
        "2606:2800:220:1::1",
    ]
    with pytest.raises(UnsafeUrlError, match="private"):
        check_webhook_url("https://mixed.example.com/", **STRICT)
    with pytest.raises(UnsafeUrlError, match="loopback"):
        check_webhook_url("https://rebind.example.com/", **STRICT)
    with pytest.raises(UnsafeUrlError, match="https"):
        check_webhook_url("http://plain.example.com/", **STRICT)
    check_webhook_url(
        "http://PLAIN.example.com./",
        allow_loopback=False,
        allow_private=False,
        http_allowlist=["plain.example.com"],
    )
    with pytest.raises(HostResolutionError):
        check_webhook_url("https://nowhere.example.com/", **STRICT)
