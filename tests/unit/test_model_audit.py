"""Model manifests, the audit trail, the worker's refusal on a mismatch, and `condense models verify`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from sqlalchemy import Engine

from condense.cli import main
from schema.db import make_engine
from schema.store import audit
from summarizer import manifest
from summarizer.testing import FakeSummarizer
from tests.fixtures.gateway import make_settings
from workers.errors import ModelMismatchError
from workers.modelcheck import admit_model


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    root = tmp_path / "tiny-model"
    (root / "sub").mkdir(parents=True)
    (root / "model.safetensors").write_bytes(b"\x00weights" * 100)
    (root / "tokenizer.json").write_text('{"vocab": {"a": 0}}')
    (root / "sub" / "config.json").write_text('{"d_model": 8}')
    return root


@pytest.fixture
def engine(sqlite_url: str) -> Engine:
    return make_engine(make_settings(sqlite_url).database)


def loaded(cache: Path, model_dir: Path) -> FakeSummarizer:
    summarizer = FakeSummarizer()
    checked = manifest.check(cache, summarizer.info.name, model_dir, None)
    summarizer.manifest = checked
    summarizer.info = dataclasses.replace(summarizer.info, manifest_sha256=checked.manifest.digest)
    return summarizer


def test_first_load_writes_the_manifest_and_a_later_one_compares(tmp_path: Path, model_dir: Path) -> None:
    first = manifest.check(tmp_path / "cache", "tiny", model_dir, None)
    assert first.written_now and first.ok
    assert first.path.is_file() and first.path.parent == tmp_path / "cache" / "manifests"
    paths = {f.path: f for f in first.manifest.files}
    assert set(paths) == {"source/model.safetensors", "source/tokenizer.json", "source/sub/config.json"}
    assert paths["source/model.safetensors"].size == 800
    assert len(paths["source/model.safetensors"].sha256) == 64
    again = manifest.check(tmp_path / "cache", "tiny", model_dir, None)
    assert not again.written_now and again.ok
    assert again.manifest.digest == first.manifest.digest

    (model_dir / "tokenizer.json").write_text('{"vocab": {"b": 0}}')
    (model_dir / "sub" / "config.json").unlink()
    (model_dir / "extra.bin").write_bytes(b"x")
    changed = manifest.check(tmp_path / "cache", "tiny", model_dir, None)
    assert changed.differences == (
        "missing source/sub/config.json",
        "added source/extra.bin",
        "changed source/tokenizer.json",
    )
    assert changed.manifest.digest != first.manifest.digest


def test_adapters_are_part_of_the_manifest_and_flavours_keep_their_own(
    tmp_path: Path, model_dir: Path
) -> None:
    adapter = tmp_path / "support-lora"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"r": 4}')
    (adapter / "adapter_model.safetensors").write_bytes(b"lora" * 10)
    cache = tmp_path / "cache"
    first = manifest.check(
        cache, "tiny", model_dir, None, flavour="torch-int8", adapters={"support": adapter}
    )
    assert {f.path for f in first.manifest.files} >= {
        "adapter:support/adapter_config.json",
        "adapter:support/adapter_model.safetensors",
    }
    # Another export flavour of the same source is a separate, equally valid manifest.
    other = manifest.check(cache, "tiny", model_dir, None, flavour="torch-fp32")
    assert other.written_now and other.ok and other.path != first.path
    (adapter / "adapter_model.safetensors").write_bytes(b"retrained" * 10)
    again = manifest.check(
        cache, "tiny", model_dir, None, flavour="torch-int8", adapters={"support": adapter}
    )
    assert again.differences == ("changed adapter:support/adapter_model.safetensors",)
    assert manifest.verify_all(cache)[first.path] == again.differences


def test_loads_and_changes_are_audit_events(tmp_path: Path, model_dir: Path, engine: Engine) -> None:
    summarizer = loaded(tmp_path / "cache", model_dir)
    admit_model(engine, summarizer, allow_mismatch=False)
    admit_model(engine, summarizer, allow_mismatch=False, component="gateway")
    (model_dir / "model.safetensors").write_bytes(b"new weights")
    with pytest.raises(ModelMismatchError, match=r"changed source/model\.safetensors"):
        admit_model(engine, loaded(tmp_path / "cache", model_dir), allow_mismatch=False)
    with engine.connect() as conn:
        events = list(reversed(audit.events(conn)))
    assert [e.event for e in events] == ["load", "load", "change", "mismatch"]
    assert [e.component for e in events] == ["worker", "gateway", "worker", "worker"]
    first, _, change, mismatch = events
    assert first.manifest_sha256 == summarizer.info.manifest_sha256
    assert first.weights_sha256 == summarizer.info.sha256
    assert first.host and first.pid > 0
    assert change.previous_manifest_sha256 == first.manifest_sha256
    assert change.manifest_sha256 != first.manifest_sha256
    assert mismatch.details["refused"] is True
    assert mismatch.details["differences"] == ["changed source/model.safetensors"]


def test_a_mismatch_is_allowed_when_configured(tmp_path: Path, model_dir: Path, engine: Engine) -> None:
    loaded(tmp_path / "cache", model_dir)
    (model_dir / "tokenizer.json").write_text("{}")
    admit_model(engine, loaded(tmp_path / "cache", model_dir), allow_mismatch=True)
    with engine.connect() as conn:
        assert audit.events(conn)[0].details["refused"] is False


def test_results_carry_the_manifest_digest(tmp_path: Path, model_dir: Path) -> None:
    summarizer = loaded(tmp_path / "cache", model_dir)
    assert summarizer.info.as_dict()["manifest_sha256"] == summarizer.manifest.manifest.digest  # type: ignore[union-attr]


def test_models_verify_exits_non_zero_naming_the_files(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("CONDENSE_SUMMARIZER__CACHE_DIR", str(cache))
    manifest.check(cache, "tiny", model_dir, None)
    assert main(["models", "verify"]) == 0
    assert "ok tiny-model-" in capsys.readouterr().out
    (model_dir / "model.safetensors").write_bytes(b"tampered")
    assert main(["models", "verify"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and "changed source/model.safetensors" in out
    assert main(["models", "verify", "--accept"]) == 0
    capsys.readouterr()
    assert main(["models", "verify"]) == 0
