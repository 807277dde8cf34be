"""The MiniLM sentence encoder behind the extractive model, on ONNX Runtime or torch.

The encoder takes token ids (the caller tokenizes once, for counting and for splitting long
sentences) and returns mean-pooled, L2-normalised embeddings, as sentence-transformers does for
all-MiniLM-L6-v2.

A sentence's embedding depends on that sentence alone, never on what it is batched with: the int8
export quantizes activations with ranges fixed once from ``calibration.txt`` (dynamic int8 took
them from each batch, so a document's summary changed with its batch mates), a sentence's padded
width follows from its own length, and pooling reads each row's own tokens only.
``tests/integration/test_determinism.py`` holds this to the byte on the CPU. Two backends fall
short: torch-int8 (dynamic, measured) and, unmeasured, CUDA, whose kernels may change with the
number of rows in a batch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from summarizer.errors import SummarizerConfigError
from summarizer.runtime import cache_key, cached_export, ort_session_options

log = logging.getLogger(__name__)

ENCODER_BACKENDS = ("onnx-int8", "onnx-fp32", "torch-fp32", "torch-int8", "torch-fp16", "torch-bf16")

CALIBRATION_FILE = Path(__file__).with_name("calibration.txt")
# How onnx-int8 is built. Part of the export's cache key and of ModelInfo.quantization (hence of
# every result's engine version): change it whenever the quantization settings below change.
# u8 activations; s8 weights per output channel (per-tensor scales moved the nearest neighbour of
# about a quarter of sentences in a trial, which changes which sentences get picked); QDQ, which
# ONNX Runtime fuses into MatMulIntegerToFloat (the fastest of the static variants measured); MatMul
# outputs left in float (requantizing them lowered the mean cosine to fp32's from 0.99 to 0.93).
# Only the MatMuls with a weight are quantized: the two per attention head that multiply activations
# cost more in int8 (quantize, QLinearMatMul, dequantize) than in float. The residual stream stays
# float: the quantizer hands every reader of a quantized tensor its dequantized copy, so the skip
# connections carried int8 rounding and an extra DequantizeLinear each; now only the MatMuls read it.
# Both took 6% off the encoder's CPU time on the PEPs sample (benchmarks/engine.py, docs/benchmarks.md).
INT8_RECIPE = "static-int8-qdq-u8s8-per-channel-minmax-linear-float-residual"
# ONNX Runtime's fused SkipLayerNormalization kernel took 10% of the int8 encoder's time, five
# times what the unfused Add and LayerNormalization it replaces take; leaving it out made the int8
# encoder 13% faster. It is left out of every ONNX session, fp32 too, so comparisons stay fair.
ORT_DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)
# A batch holds sentences of one padded width, their length rounded up to a multiple of this, so
# that a sentence's width depends on itself alone: torch on the CPU gave other bits for the same
# sentence at 25 of 29 other widths tried (ONNX Runtime at none, but other kernels may). On the CPU
# the step is 1, no padding at all: 128 texts of 150 words took the same time batched as with
# mixed-length batches and a fifth less one by one (steps of 8 and 16 cost 13% and 39% more CPU
# time); on a GPU, where every batch is a kernel launch, nearby lengths share batches.
CPU_WIDTH_STEP = 1
GPU_WIDTH_STEP = 16


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
    def __init__(
        self, model_file: Path, num_threads: int, disabled_optimizers: Sequence[str] = ORT_DISABLED_OPTIMIZERS
    ) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(
            str(model_file),
            ort_session_options(num_threads),
            providers=["CPUExecutionProvider"],
            disabled_optimizers=list(disabled_optimizers),
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


def calibration_lines(path: Path = CALIBRATION_FILE) -> list[str]:
    """The calibration inputs: every non-blank line of ``path`` that is not a ``#`` comment."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def calibration_digest(path: Path = CALIBRATION_FILE) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def _quantize_static(fp32_file: Path, target_file: Path, feeds: Sequence[dict[str, np.ndarray]]) -> None:
    """Int8 weights and int8 activations whose ranges come from running ``feeds`` through the fp32 model."""
    import onnx

    graph = onnx.load(str(fp32_file), load_external_data=False).graph
    constants = {item.name for item in graph.initializer} | {
        output for node in graph.node if node.op_type == "Constant" for output in node.output
    }
    linear = [node.name for node in graph.node if node.op_type == "MatMul" and node.input[1] in constants]
    if not linear:
        raise SummarizerConfigError(f"{fp32_file} has no MatMul with a constant weight to quantize")
    quantize_qdq(fp32_file, target_file, feeds, nodes=linear)
    _float_residual(target_file, quantized=set(linear))


def quantize_qdq(
    fp32_file: Path,
    target_file: Path,
    feeds: Sequence[dict[str, np.ndarray]],
    *,
    nodes: Sequence[str] | None = None,
) -> None:
    """The static QDQ quantization of MatMuls both int8 recipes share: ``nodes`` names the MatMuls
    to quantize (None: every MatMul, as the recipe before 2026-11-30 did)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    names = {item.name for item in onnx.load(str(fp32_file), load_external_data=False).graph.input}

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self.rest = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            feed = next(self.rest, None)
            return None if feed is None else {key: value for key, value in feed.items() if key in names}

    quantize_static(
        str(fp32_file),
        str(target_file),
        Feeds(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["MatMul"],
        nodes_to_quantize=list(nodes) if nodes is not None else None,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        # Not CalibMaxIntermediateOutputs: onnxruntime 1.32 drops the outputs it collected each
        # time that count is reached instead of folding them into the ranges first.
        extra_options={"OpTypesToExcludeOutputQuantization": ["MatMul"]},
    )


def _float_residual(model_file: Path, *, quantized: set[str]) -> None:
    """Point every reader of a quantized activation but the ``quantized`` nodes back at its float original.

    A QDQ model hands all readers of a quantized tensor ``DequantizeLinear(QuantizeLinear(x))``;
    the MatMuls fuse that pair away, but the residual Add, LayerNormalization and Shape nodes would
    read x with int8 rounding and pay for a dequantization.
    """
    import onnx

    model = onnx.load(str(model_file))
    producer = {output: node for node in model.graph.node for output in node.output}
    original: dict[str, str] = {}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear":
            source = producer.get(node.input[0])
            if source is not None and source.op_type == "QuantizeLinear":
                original[node.output[0]] = source.input[0]
    for node in model.graph.node:
        if node.name not in quantized:
            for position, name in enumerate(node.input):
                if name in original:
                    node.input[position] = original[name]
    onnx.save(model, str(model_file))


def _export_onnx(source: Path, target: Path, *, calibration: Sequence[dict[str, np.ndarray]] | None) -> None:
    """Export ``source`` to ONNX in ``target``; with ``calibration`` feeds, quantize it to static int8."""
    from optimum.onnxruntime import ORTModelForFeatureExtraction

    fp32_dir = target / "fp32" if calibration is not None else target
    model = ORTModelForFeatureExtraction.from_pretrained(source, export=True, local_files_only=True)
    model.save_pretrained(fp32_dir)
    del model
    if calibration is not None:
        _quantize_static(fp32_dir / "model.onnx", target / "model_int8.onnx", calibration)
        shutil.rmtree(fp32_dir)


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
        self.width_step = CPU_WIDTH_STEP if device == "cpu" else GPU_WIDTH_STEP

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
            recipe = f"{INT8_RECIPE}-calib-{calibration_digest()}" if backend == "onnx-int8" else None
            config = {"model": "encoder", "backend": backend, "recipe": recipe}
            directory, built = cached_export(
                cache_root,
                cache_key(sha, config),
                lambda tmp: _export_onnx(
                    model_dir, tmp, calibration=self._calibration_feeds() if recipe else None
                ),
            )
            if built:
                log.info("exported %s encoder to %s", backend, directory)
            model_file = next(iter(sorted(directory.glob("*.onnx"))), None)
            if model_file is None:
                raise SummarizerConfigError(f"cached export {directory} holds no .onnx file; delete it")
            self._backend: _Backend = _OnnxBackend(model_file, num_threads)
            return EncoderLoad(backend, device, recipe or "none", directory, built)
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
            log.warning(
                "backend torch-int8 takes activation scales from each batch, so a document's summary"
                " can change with its batch mates; onnx-int8 gives the same summary in any batch"
            )
        model.to(device)
        self._backend = _TorchBackend(model, device, dtype)
        return EncoderLoad(backend, device, quantization, None, False)

    def _calibration_feeds(self) -> list[dict[str, np.ndarray]]:
        """One unpadded input per calibration line, so that no range is widened by pad positions."""
        feeds = []
        for ids in self.tokenize(calibration_lines()):
            row = np.array([[self.cls_id, *ids[: self.max_tokens - 2], self.sep_id]], dtype=np.int64)
            feeds.append(
                {"input_ids": row, "attention_mask": np.ones_like(row), "token_type_ids": np.zeros_like(row)}
            )
        return feeds

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text without special tokens."""
        return [
            encoding.ids for encoding in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        ]

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def embed(self, pieces: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Mean-pooled (not normalised) embeddings of id sequences that fit the encoder, and their lengths.

        Pieces must be at most ``max_tokens - 2`` long; callers split longer sentences. Each piece is
        padded to its length rounded up to ``width_step`` and run with the pieces of that width only,
        so that neither its width nor its pooling depends on the others.
        """
        lengths = [len(piece) + 2 for piece in pieces]
        step = self.width_step
        widths = [min(-(-length // step) * step, self.max_tokens) for length in lengths]
        pooled: dict[int, np.ndarray] = {}
        for width in sorted(set(widths)):
            rows = [row for row, row_width in enumerate(widths) if row_width == width]
            ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for line, row in enumerate(rows):
                piece = pieces[row]
                ids[line, 0] = self.cls_id
                ids[line, 1 : len(piece) + 1] = piece
                ids[line, len(piece) + 1] = self.sep_id
                mask[line, : lengths[row]] = 1
            hidden = self._backend.hidden(ids, mask)
            for line, row in enumerate(rows):
                # The row's own tokens only: a sum over the padded width would add the pad
                # positions' zeros in an order that could depend on the width.
                pooled[row] = hidden[line, : lengths[row]].mean(axis=0)
        vectors = np.stack([pooled[row] for row in range(len(pieces))])
        return np.asarray(vectors, dtype=np.float32), np.asarray(lengths, dtype=np.float32)


def normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)
