"""Where and how inference runs: device choice, CPU features, thread counts, weight hashes, the cache."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from summarizer.errors import OutOfMemoryError, SummarizerConfigError

# Everything the engine loads is local; these stop every Hugging Face library from calling home.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".msgpack", ".h5")
# Bumped when the export layout changes, so that old cache entries are not reused by mistake.
CACHE_FORMAT = 1


def go_offline() -> None:
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(setting: str) -> str:
    if setting == "auto":
        return "cuda" if cuda_available() else "cpu"
    if setting == "cuda" and not cuda_available():
        raise SummarizerConfigError("summarizer.device is 'cuda' but torch sees no CUDA device")
    return setting


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def int8_isa() -> str:
    """The onnxruntime dynamic-quantization preset that suits this CPU."""
    flags = cpu_flags()
    if "avx512_vnni" in flags or "avx512vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    return "arm64" if os.uname().machine in {"aarch64", "arm64"} else "avx2"


def set_threads(num_threads: int) -> None:
    if num_threads > 0:
        import torch

        torch.set_num_threads(num_threads)


def ort_session_options(num_threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle intra-op threads spin by default; beside an event loop, a database and other
    # processes on a few cores that spinning took a third of the CPU in the sync-path profile.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if num_threads > 0:
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
    return options


def weight_files(model_dir: Path) -> list[Path]:
    return sorted(
        path for path in model_dir.rglob("*") if path.is_file() and path.name.endswith(WEIGHT_SUFFIXES)
    )


def hash_weights(model_dir: Path) -> str:
    """SHA-256 over every weight file (relative name and bytes), the identity of a model."""
    files = weight_files(model_dir)
    if not files:
        raise SummarizerConfigError(f"no weight files (*.safetensors, *.bin) in model directory {model_dir}")
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(model_dir)).encode())
        digest.update(b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def cache_key(weights_sha256: str, config: dict[str, Any]) -> str:
    payload = json.dumps({"weights": weights_sha256, "format": CACHE_FORMAT, **config}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def cached_export(cache_root: Path, key: str, build: Callable[[Path], None]) -> tuple[Path, bool]:
    """Return the cache directory for ``key``, building it with ``build(tmp_dir)`` when absent.

    The build writes into a temporary sibling that is renamed into place, so a crash or a concurrent
    process never leaves a half-written model behind. Returns (directory, built_now).
    """
    target = cache_root / key
    if (target / "done.json").exists():
        return target, False
    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=cache_root))
    try:
        build(tmp)
        (tmp / "done.json").write_text(json.dumps({"key": key}), encoding="utf-8")
        try:
            os.rename(tmp, target)
        except OSError:
            # Another process finished the same export first; theirs is as good as ours.
            if not (target / "done.json").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target, True


def is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


@contextlib.contextmanager
def oom_as_retryable() -> Iterator[None]:
    """Turn a device out-of-memory error into :class:`OutOfMemoryError` so callers retry smaller."""
    try:
        yield
    except Exception as exc:
        if is_oom(exc):
            with contextlib.suppress(Exception):
                import torch

                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            raise OutOfMemoryError(f"out of memory during inference: {str(exc).splitlines()[0]}") from exc
        raise


def settle_heap() -> None:
    """Keep the garbage collector off the long-lived heap once the model is loaded.

    The model, tokenizer and frameworks leave hundreds of thousands of objects that never die;
    every full collection walked them all and stalled the event loop for ~100 ms (the gateway's
    submit benchmark's p99 fell from ~120 ms to under 50 ms with this). Freezing moves them out of the
    collector's sight, and a larger young generation makes collections rarer under load.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
