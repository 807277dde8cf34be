"""Model manifests: every file a loaded model came from, with its size and SHA-256.

Written next to the export cache (``<cache_dir>/manifests/``) the first time a model directory is
loaded, and compared on every later load and by ``condense models verify``. The weights digest in
``ModelInfo.sha256`` only covers weight files; a swapped tokenizer, config or exported ONNX graph
changes summaries just as much, so the manifest covers every file of the source directory and of
the export built from it. Its digest (``ModelInfo.manifest_sha256``) is stored with each result.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# Written by tools beside the model, never read by it: a stray one must not fail the check.
_IGNORED_PARTS = frozenset({"__pycache__", ".git"})
_IGNORED_SUFFIXES = (".pyc", ".lock")
MANIFEST_VERSION = 1


@dataclass(frozen=True, slots=True)
class FileEntry:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    model: str
    # Name of each root ("source", "export") -> the absolute directory it was read from.
    roots: Mapping[str, str]
    files: tuple[FileEntry, ...]

    @property
    def digest(self) -> str:
        """SHA-256 of the file list alone: the same bytes give the same digest on any machine."""
        canonical = json.dumps([[f.path, f.size, f.sha256] for f in self.files], separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": MANIFEST_VERSION,
                "model": self.model,
                "digest": self.digest,
                "roots": dict(self.roots),
                "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files],
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        files = tuple(FileEntry(f["path"], int(f["size"]), f["sha256"]) for f in data["files"])
        return cls(model=data["model"], roots=dict(data["roots"]), files=files)


@dataclass(frozen=True)
class ManifestCheck:
    """The outcome of comparing a model's files with its manifest at load time."""

    path: Path
    manifest: Manifest
    written_now: bool
    differences: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.differences


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and not _IGNORED_PARTS.intersection(p.relative_to(root).parts)
        and not p.name.endswith(_IGNORED_SUFFIXES)
    )


def build(model: str, roots: Mapping[str, Path]) -> Manifest:
    entries = []
    for name, root in sorted(roots.items()):
        for path in _files(root):
            rel = f"{name}/{path.relative_to(root).as_posix()}"
            entries.append(FileEntry(rel, path.stat().st_size, _sha256(path)))
    return Manifest(model=model, roots={k: str(v.resolve()) for k, v in roots.items()}, files=tuple(entries))


def rebuild(manifest: Manifest) -> Manifest:
    """The same roots hashed again, as they are on disk now."""
    return build(manifest.model, {name: Path(root) for name, root in manifest.roots.items()})


def compare(expected: Manifest, actual: Manifest) -> tuple[str, ...]:
    """One line per file that differs: ``changed``, ``missing`` or ``added``, with its path."""
    before = {f.path: f for f in expected.files}
    now = {f.path: f for f in actual.files}
    lines = [f"missing {path}" for path in sorted(before.keys() - now.keys())]
    lines += [f"added {path}" for path in sorted(now.keys() - before.keys())]
    lines += [f"changed {path}" for path in sorted(before.keys() & now.keys()) if before[path] != now[path]]
    return tuple(lines)


def manifest_dir(cache_dir: Path) -> Path:
    return cache_dir / "manifests"


def manifest_path(cache_dir: Path, source_dir: Path, flavour: str = "") -> Path:
    # One manifest per source directory and export flavour (the backend): a model replaced in place
    # is what it must catch, while the same model exported twice (int8 and fp32) has two file sets
    # that are both right. The export directory itself cannot be the key: its name carries the
    # weights' hash, so a replaced model would get a fresh manifest instead of a mismatch.
    name = str(source_dir.resolve()) if not flavour else f"{source_dir.resolve()}\0{flavour}"
    key = hashlib.sha256(name.encode()).hexdigest()[:16]
    return manifest_dir(cache_dir) / f"{source_dir.name}-{key}.json"


def _write(path: Path, manifest: Manifest) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(manifest.to_json(), encoding="utf-8")
    os.replace(tmp, path)


def check(
    cache_dir: Path,
    model: str,
    source_dir: Path,
    export_dir: Path | None,
    *,
    flavour: str = "",
    adapters: Mapping[str, Path] | None = None,
) -> ManifestCheck:
    """Hash the model's files; write the manifest if there is none, else compare with it.

    ``adapters`` (name -> directory) are hashed as roots ``adapter:<name>``: a retrained adapter
    swapped in place changes summaries as surely as new base weights.
    """
    roots = {"source": source_dir}
    if export_dir is not None:
        roots["export"] = export_dir
    for name, directory in (adapters or {}).items():
        roots[f"adapter:{name}"] = directory
    current = build(model, roots)
    path = manifest_path(cache_dir, source_dir, flavour)
    if not path.is_file():
        _write(path, current)
        return ManifestCheck(path, current, written_now=True, differences=())
    expected = Manifest.from_json(path.read_text(encoding="utf-8"))
    return ManifestCheck(path, current, written_now=False, differences=compare(expected, current))


def accept(check: ManifestCheck) -> None:
    """Make the files as they are now the reference (after an intended model change)."""
    _write(check.path, check.manifest)


def verify_all(cache_dir: Path) -> dict[Path, tuple[str, ...]]:
    """Every manifest under ``cache_dir`` against its files now; empty tuples where nothing changed."""
    results: dict[Path, tuple[str, ...]] = {}
    for path in sorted(manifest_dir(cache_dir).glob("*.json")):
        expected = Manifest.from_json(path.read_text(encoding="utf-8"))
        results[path] = compare(expected, rebuild(expected))
    return results
