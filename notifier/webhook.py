"""One webhook attempt over httpx, connected only to addresses vetted by :mod:`common.urlsafety`."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import httpcore
import httpx

from common.urlsafety import HostResolutionError, UnsafeUrlError, resolve_and_check
from notifier.errors import DeliveryFailedError, DeliveryImpossibleError, DestinationGoneError
from schema.settings import NotifierSettings

USER_AGENT = "condense-webhooks/1"
_ERROR_EXCERPT_BYTES = 200


class _PinnedBackend(httpcore.SyncBackend):
    """Connects to the vetted addresses whatever host the request names.

    The URL keeps its host name, so the Host header and the TLS server name (SNI and certificate
    check) still use it; only the DNS lookup that would happen here is replaced by the answer
    that passed the safety check, which a rebinding DNS server can no longer change.
    """

    def __init__(self, addresses: Sequence[str]) -> None:
        if not addresses:
            raise ValueError("no address to connect to")
        self._addresses = list(addresses)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        last: Exception | None = None
        for address in self._addresses:
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None  # noqa: S101 - at least one address was tried
        raise last


class PinnedTransport(httpx.HTTPTransport):
    """An httpx transport whose connections go to ``addresses`` only, never through a proxy."""

    def __init__(self, addresses: Sequence[str], *, verify: bool = True) -> None:
        super().__init__(trust_env=False, verify=verify)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            network_backend=_PinnedBackend(addresses),
            max_connections=1,
        )


@dataclass(frozen=True)
class WebhookResponse:
    status_code: int
    latency_ms: float


def post(settings: NotifierSettings, url: str, body: bytes, headers: dict[str, str]) -> WebhookResponse:
    """POST one signed body to ``url``; return its answer when it is 2xx.

    Raises :class:`DeliveryFailedError` (network errors, non-2xx answers, a host that does not
    resolve right now), :class:`DestinationGoneError` on 410, and :class:`DeliveryImpossibleError`
    on a 3xx (redirects are never followed) or when the URL is no longer safe to call.
    """
    try:
        addresses = resolve_and_check(
            url,
            allow_loopback=settings.allow_loopback,
            allow_private=settings.allow_private,
            http_allowlist=settings.http_allowlist,
        )
    except HostResolutionError as exc:
        raise DeliveryFailedError(exc.message) from exc
    except UnsafeUrlError as exc:
        raise DeliveryImpossibleError(exc.message, code=exc.code) from exc

    request_headers = {
        **headers,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }
    started = time.perf_counter()
    try:
        with httpx.Client(
            transport=PinnedTransport(addresses),
            timeout=settings.webhook_timeout_s,
            # A redirect would lead to a URL nobody vetted; the receiver must give its final URL.
            follow_redirects=False,
            trust_env=False,
        ) as client:
            response = client.post(url, content=body, headers=request_headers)
    except (httpx.HTTPError, OSError) as exc:
        raise DeliveryFailedError(
            f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
            latency_ms=(time.perf_counter() - started) * 1000,
        ) from exc
    latency_ms = (time.perf_counter() - started) * 1000
    if response.is_success:
        return WebhookResponse(response.status_code, latency_ms)
    excerpt = response.content[:_ERROR_EXCERPT_BYTES].decode("utf-8", "replace")
    message = f"HTTP {response.status_code}" + (f": {excerpt}" if excerpt else "")
    if response.status_code == httpx.codes.GONE:
        raise DestinationGoneError(message, status_code=response.status_code, latency_ms=latency_ms)
    if response.is_redirect or 300 <= response.status_code < 400:
        # Following would reach a URL nobody vetted, and a redirect does not go away by waiting:
        # retrying it on the schedule only kept the delivery pending for a day. The receiver's
        # owner must set the final URL, then replay the delivery.
        location = response.headers.get("location", "")[:_ERROR_EXCERPT_BYTES]
        raise DeliveryImpossibleError(
            f"HTTP {response.status_code}" + (f" to {location}" if location else "") + ": redirects are "
            "not followed; set the webhook to the URL it redirects to and redeliver",
            status_code=response.status_code,
            latency_ms=latency_ms,
        )
    raise DeliveryFailedError(message, status_code=response.status_code, latency_ms=latency_ms)
