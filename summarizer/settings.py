"""Settings of the summarization engine.

The service nests :class:`SummarizerSettings` as its ``summarizer`` section; the engine itself only
ever sees this model, so it can be built and tested on its own.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_SYSTEM_PROMPT = (
    "You are a careful editor. You write faithful, concise summaries and add nothing that the"
    " document does not say."
)
DEFAULT_USER_PROMPT = (
    "Summarize the following document in about {max_words} words. Write the summary in {language}."
    " Reply with the summary only.\n\n{text}"
)


class _Section(BaseModel):
    # Like every settings section: a misspelled key is an error, not a silently kept default.
    model_config = ConfigDict(extra="forbid", validate_default=True)


class PromptSettings(_Section):
    system: str = Field(
        default=DEFAULT_SYSTEM_PROMPT,
        description="System message of instruct models; may use {max_words} and {language}.",
    )
    user: str = Field(
        default=DEFAULT_USER_PROMPT,
        description="User message of instruct models: must contain {text}; may use {max_words} and"
        " {language} (the document's language, detected).",
    )


class OpenAISettings(_Section):
    base_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Root of an OpenAI-compatible server (backend openai-http); /v1/chat/completions is"
        " appended.",
    )
    model: str = Field(default="", description="Model name sent with each request (backend openai-http).")
    api_key_env: str = Field(
        default="",
        description="Name of the environment variable holding the API key, read at load; empty: no key.",
    )
    max_concurrency: int = Field(default=4, ge=1, le=256, description="Requests in flight at once.")
    timeout_s: float = Field(default=120.0, gt=0, description="Time limit of one request.")
    tokenizer_dir: str = Field(
        default="",
        description="Local tokenizer directory of the served model for token counts; empty: estimated"
        " from words (4 tokens per 3 words).",
    )


class SelectionSettings(_Section):
    """How the extractive model picks sentences (``summarizer.select``); tuned on PEPs, see docs/benchmarks.md."""

    min_words: int = Field(default=5, ge=1, description="Shortest sentence, in words, a summary may take.")
    max_words: int = Field(
        default=60,
        ge=1,
        description="Longest sentence ending in a colon joined with its list into one candidate, in words.",
    )
    pick_max_words: int = Field(
        default=50,
        ge=1,
        description="Longest candidate, in words, a summary may take (shorter ones leave room for more).",
    )
    centroid_weight: float = Field(
        default=1.0, description="Weight of a sentence's cosine to the document centroid."
    )
    centrality_weight: float = Field(
        default=0.5,
        description="Weight of directed (PacSum) centrality, scaled to [0, 1] per document; 0 turns it off.",
    )
    forward_weight: float = Field(
        default=-0.5,
        description="Directed centrality: weight of a sentence's edges to earlier sentences (negative: repeating"
        " what came before counts against it).",
    )
    backward_weight: float = Field(
        default=1.0, description="Directed centrality: weight of a sentence's edges to later sentences."
    )
    edge_threshold: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Directed centrality: an edge counts above this fraction of the way from the document's"
        " lowest to its highest sentence similarity.",
    )
    position_weight: float = Field(
        default=0.25,
        description="Prior for early sentences: this much for the first, halved at position_scale.",
    )
    position_scale: float = Field(
        default=20.0, gt=0, description="Sentence position at which the position prior has halved."
    )
    section_weight: float = Field(
        default=0.2,
        description="Prior for the first sentence of each section (sections follow headings); 0: off.",
    )
    section_scale: float = Field(
        default=2.0,
        gt=0,
        description="Sentence rank within its section at which the section prior has halved.",
    )
    section_order_scale: float = Field(
        default=1e9,
        gt=0,
        description="Section rank at which the section prior has halved again (large: every section alike).",
    )
    boilerplate_penalty: float = Field(
        default=0.1,
        ge=0.0,
        description="Penalty for a sentence that is all code tokens or holds a URL, in proportion to its share of them.",
    )
    relevance_floor: float = Field(
        default=0.6,
        ge=0.0,
        le=1.0,
        description="Sentences whose cosine to the document centroid is under this fraction of the best one's are"
        " never picked (keeps off-topic filler out of the budget's last words).",
    )
    redundancy: float = Field(
        default=0.3,
        ge=0.0,
        description="MMR: weight of a sentence's similarity to the closest one already picked.",
    )
    duplicate_threshold: float = Field(
        default=0.92,
        gt=0.0,
        le=1.0,
        description="Sentences this similar to one already picked are skipped outright.",
    )


class SummarizerSettings(_Section):
    model: str = Field(
        default="minilm",
        description="'minilm' (the bundled extractive default) or a local directory with a seq2seq model or"
        " a decoder-only instruct model (with a chat template).",
    )
    backend: Literal[
        "auto",
        "onnx-int8",
        "onnx-fp32",
        "torch-fp32",
        "torch-int8",
        "torch-fp16",
        "torch-bf16",
        "torch-8bit",
        "torch-4bit",
        "openai-http",
    ] = Field(
        default="auto",
        description="Inference runtime and precision; auto: onnx-int8 (minilm) or torch-int8 (seq2seq,"
        " instruct) on CPU, torch-fp16 on CUDA. torch-8bit/torch-4bit: bitsandbytes on CUDA;"
        " openai-http: a remote OpenAI-compatible server (see openai).",
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
        default=100,
        ge=1,
        le=5_000,
        description="Extractive summary budget, and the length instruct models are asked for, when a request"
        " names none.",
    )
    default_max_new_tokens: int = Field(
        default=128, ge=1, le=1_024, description="Abstractive summary length when a request names none."
    )
    num_threads: int = Field(default=0, ge=0, description="Inference threads; 0 lets the runtime decide.")
    prompt: PromptSettings = Field(default_factory=PromptSettings)
    adapters: dict[str, str] = Field(
        default_factory=dict,
        description="LoRA adapters of an instruct model: name -> local adapter directory; requests pick one"
        " with params.adapter.",
    )
    openai: OpenAISettings = Field(default_factory=OpenAISettings)
    selection: SelectionSettings = Field(default_factory=SelectionSettings)
