"""Settings of the summarization engine.

The service nests :class:`SummarizerSettings` as its ``summarizer`` section; the engine itself only
ever sees this model, so it can be built and tested on its own.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    # Like every settings section: a misspelled key is an error, not a silently kept default.
    model_config = ConfigDict(extra="forbid", validate_default=True)


class SummarizerSettings(_Section):
    model: str = Field(
        default="minilm",
        description="'minilm' (the bundled extractive default) or a local directory with a seq2seq model.",
    )
    backend: Literal[
        "auto", "onnx-int8", "onnx-fp32", "torch-fp32", "torch-int8", "torch-fp16", "torch-bf16"
    ] = Field(
        default="auto",
        description="Inference runtime and precision; auto: onnx-int8 (minilm) or torch-int8 (seq2seq) on CPU,"
        " torch-fp16 on CUDA.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="auto uses CUDA when torch sees a device, else the CPU."
    )
    cache_dir: str = Field(default="var/models", description="Exported/quantized models, keyed by hash.")
    max_batch_tokens: int = Field(default=16_384, ge=64, description="Token budget of one inference batch.")
    max_context_tokens: int = Field(
        default=4_096,
        ge=16,
        description="Cap on the model's own input limit per chunk (LED-sized contexts cost quadratic memory).",
    )
    chunk_overlap_tokens: int = Field(
        default=64, ge=0, description="Tokens each chunk of a long document repeats from the previous one."
    )
    default_max_words: int = Field(
        default=100, ge=1, le=5_000, description="Extractive summary budget when a request names none."
    )
    default_max_new_tokens: int = Field(
        default=128, ge=1, le=1_024, description="Abstractive summary length when a request names none."
    )
    num_threads: int = Field(default=0, ge=0, description="Inference threads; 0 lets the runtime decide.")
