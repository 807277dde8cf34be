"""Builders shared by the summarizer tests: a tiny seq2seq model made offline in a directory.

The model is random (its summaries are gibberish) but real: a 2-layer BART with d_model 64 and a
64-position context, with a word-level tokenizer trained here on local text. It exercises every
code path of the abstractive engine (loading, quantization, ONNX export, chunking) in seconds.
"""

from __future__ import annotations

from pathlib import Path

TINY_CONTEXT_TOKENS = 64

_CORPUS = """
The engine splits long documents into chunks that fit the model context. Each chunk is summarized
and the partial summaries are summarized again until they fit. Nothing is truncated on the way.
Workers pull jobs from the queue in batches and store each result in the database. The gateway
answers short texts at once and sends long ones to the queue. Quantized models run faster on the CPU.
A summary keeps the main points of the text and leaves out the details. Tokens are counted before
the work is routed. Progress is reported after every chunk and a job may be canceled between chunks.
"""


def corpus_words() -> list[str]:
    return _CORPUS.split()


def build_tiny_seq2seq(directory: Path, *, context_tokens: int = TINY_CONTEXT_TOKENS) -> Path:
    """Write a tiny random BART model and its tokenizer to ``directory`` and return it."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BartConfig, BartForConditionalGeneration, PreTrainedTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator([_CORPUS] * 3, trainers.WordLevelTrainer(special_tokens=specials))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=context_tokens,
        model_input_names=["input_ids", "attention_mask"],
    )
    config = BartConfig(
        vocab_size=tokenizer.get_vocab_size(),
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_position_embeddings=context_tokens,
        bos_token_id=0,
        pad_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_bos_token_id=None,
        forced_eos_token_id=2,
    )
    torch.manual_seed(0)
    model = BartForConditionalGeneration(config).eval()
    model.save_pretrained(directory)
    fast.save_pretrained(directory)
    return directory
