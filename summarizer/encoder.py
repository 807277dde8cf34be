"""The MiniLM sentence encoder behind the extractive model, on ONNX Runtime or torch.

The encoder takes token ids (the caller tokenizes once, for counting and for splitting long
sentences) and returns mean-pooled, L2-normalised embeddings, as sentence-transformers does for
all-MiniLM-L6-v2.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from summarizer.errors import SummarizerConfigError
from summarizer.runtime import cache_key, cached_export, int8_isa, ort_session_options

log = logging.getLogger(__name__)

ENCODER_BACKENDS = ("onnx-int8", "onnx-fp32", "torch-fp32", "torch-int8", "torch-fp16", "torch-bf16")


class _Backend(Protocol):
    def hidden(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray: ...


@dataclass
class EncoderLoad:
    backend: str
    device: str
    quantization: str
    cache_dir: Path | None
    exported_now: bool


class _OnnxBackend:
    def __init__(self, model_file: Path, num_threads: int) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(
            str(model_file), ort_session_options(num_threads), providers=["CPUExecutionProvider"]
        )
        self.inputs = {item.name for item in self.session.get_inputs()}

    def hidden(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        return np.asarray(self.session.run(None, feed)[0], dtype=np.float32)


class _TorchBackend:
    def __init__(self, model: Any, device: str, dtype: Any) -> None:
        self.model = model
        self.device = device
        self.dtype = dtype

    def hidden(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.model(
                input_ids=torch.from_numpy(ids).to(self.device),
                attention_mask=torch.from_numpy(mask).to(self.device),
            ).last_hidden_state
        return np.asarray(out.float().cpu().numpy(), dtype=np.float32)


def _export_onnx(source: Path, target: Path, *, quantize: str | None) -> None:
    """Export ``source`` to ONNX in ``target``; with ``quantize`` (an ISA preset) make it dynamic int8."""
    from optimum.onnxruntime import ORTModelForFeatureExtraction, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    fp32_dir = target / "fp32" if quantize else target
    model = ORTModelForFeatureExtraction.from_pretrained(source, export=True, local_files_only=True)
    model.save_pretrained(fp32_dir)
    del model
    if quantize:
        # Per-channel scales: per-tensor int8 moved the nearest neighbour of about a quarter of
        # sentences in a trial, which changes which sentences get picked.
        config = getattr(AutoQuantizationConfig, quantize)(is_static=False, per_channel=True)
        quantizer = ORTQuantizer.from_pretrained(fp32_dir)
        quantizer.quantize(save_dir=target, quantization_config=config)
        for path in fp32_dir.iterdir():
            path.unlink()
        fp32_dir.rmdir()


class SentenceEncoder:
    """Mean-pooled, normalised sentence embeddings from a BERT-style encoder directory."""

    def __init__(
        self,
        model_dir: Path,
        *,
        backend: str,
        device: str,
        weights_sha256: str,
        cache_root: Path,
        num_threads: int = 0,
    ) -> None:
        from tokenizers import Tokenizer

        tokenizer_file = model_dir / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise SummarizerConfigError(f"encoder directory {model_dir} has no tokenizer.json")
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.cls_id, self.sep_id, self.pad_id = self._special_ids()
        self.max_tokens = self._max_tokens(model_dir)
        self.load = self._load_backend(model_dir, backend, device, weights_sha256, cache_root, num_threads)

    def _special_ids(self) -> tuple[int, int, int]:
        ids = [self.tokenizer.token_to_id(token) for token in ("[CLS]", "[SEP]", "[PAD]")]
        if any(value is None for value in ids):
            raise SummarizerConfigError(
                "encoder tokenizer lacks [CLS]/[SEP]/[PAD]; only BERT-style encoders work"
            )
        return ids[0], ids[1], ids[2]  # type: ignore[return-value]

    @staticmethod
    def _max_tokens(model_dir: Path) -> int:
        limit = 512
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        limit = min(limit, int(config.get("max_position_embeddings", limit)))
        st_config = model_dir / "sentence_bert_config.json"
        if st_config.is_file():
            # The length the sentence model was trained on; longer inputs embed worse.
            limit = min(
                limit, int(json.loads(st_config.read_text(encoding="utf-8")).get("max_seq_length", limit))
            )
        return limit

    def _load_backend(
        self, model_dir: Path, backend: str, device: str, sha: str, cache_root: Path, num_threads: int
    ) -> EncoderLoad:
        if backend.startswith("onnx"):
            if device != "cpu":
                raise SummarizerConfigError(f"backend {backend} runs on CPU only; use torch-fp16 on CUDA")
            isa = int8_isa() if backend == "onnx-int8" else None
            config = {"model": "encoder", "backend": backend, "isa": isa, "per_channel": True}
            directory, built = cached_export(
                cache_root, cache_key(sha, config), lambda tmp: _export_onnx(model_dir, tmp, quantize=isa)
            )
            if built:
                log.info("exported %s encoder to %s", backend, directory)
            model_file = next(iter(sorted(directory.glob("*.onnx"))), None)
            if model_file is None:
                raise SummarizerConfigError(f"cached export {directory} holds no .onnx file; delete it")
            self._backend: _Backend = _OnnxBackend(model_file, num_threads)
            quantization = f"dynamic-int8-per-channel-{isa}" if isa else "none"
            return EncoderLoad(backend, device, quantization, directory, built)
        import torch
        from transformers import AutoModel

        dtype = {"torch-fp16": torch.float16, "torch-bf16": torch.bfloat16}.get(backend, torch.float32)
        if backend == "torch-fp16" and device != "cuda":
            raise SummarizerConfigError("backend torch-fp16 needs CUDA; use onnx-int8 or torch-fp32 on CPU")
        model = AutoModel.from_pretrained(model_dir, local_files_only=True, dtype=dtype).eval()
        quantization = {"torch-fp16": "fp16", "torch-bf16": "bf16"}.get(backend, "none")
        if backend == "torch-int8":
            if device != "cpu":
                raise SummarizerConfigError("backend torch-int8 runs on CPU only")
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
            quantization = "dynamic-int8"
        model.to(device)
        self._backend = _TorchBackend(model, device, dtype)
        return EncoderLoad(backend, device, quantization, None, False)

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text without special tokens."""
        return [
            encoding.ids for encoding in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        ]

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def embed(self, pieces: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Mean-pooled (not normalised) embeddings of id sequences that fit the encoder, and their lengths.

        Pieces must be at most ``max_tokens - 2`` long; callers split longer sentences.
        """
        width = max(len(piece) for piece in pieces) + 2
        ids = np.full((len(pieces), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(pieces), width), dtype=np.int64)
        for row, piece in enumerate(pieces):
            ids[row, 0] = self.cls_id
            ids[row, 1 : len(piece) + 1] = piece
            ids[row, len(piece) + 1] = self.sep_id
            mask[row, : len(piece) + 2] = 1
        hidden = self._backend.hidden(ids, mask)
        weights = mask[:, :, None].astype(np.float32)
        counts = weights.sum(axis=1)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(counts, 1e-9)
        return pooled, counts[:, 0]


def normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)
