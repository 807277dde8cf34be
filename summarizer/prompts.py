"""Prompts for instruct models, and cleaning their answers into plain summaries.

Both the local causal-LM engine and the OpenAI-compatible HTTP backend build their messages here,
so that one prompt setting means the same thing on either, and clean answers the same way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from summarizer.errors import SummarizerConfigError
from summarizer.settings import PromptSettings

# The sentinel stands in for the document when a prompt is split into the ids before and after it.
TEXT_SENTINEL = "\u2063DOCUMENT\u2063"

LANGUAGE_NAMES = {
    "en": "English",
    "de": "German",
    "fr": "French",
    "es": "Spanish",
    "it": "Italian",
    "pt": "Portuguese",
    "nl": "Dutch",
    "sv": "Swedish",
    "pl": "Polish",
    "tr": "Turkish",
    "zh": "Chinese",
    "ja": "Japanese",
    "ko": "Korean",
    "ru": "Russian",
    "uk": "Ukrainian",
    "ar": "Arabic",
    "fa": "Persian",
    "el": "Greek",
    "he": "Hebrew",
    "hi": "Hindi",
    "bn": "Bengali",
    "ta": "Tamil",
    "th": "Thai",
    "ka": "Georgian",
    "hy": "Armenian",
}
_UNDETERMINED = "the language of the document"


def language_name(code: str | None) -> str:
    """How a prompt names the language a summary should be written in."""
    return LANGUAGE_NAMES.get(code or "und", _UNDETERMINED)


def check_prompt(prompt: PromptSettings) -> None:
    """Refuse a template that would drop the document or name an unknown field, at load time."""
    if "{text}" not in prompt.user:
        raise SummarizerConfigError("summarizer.prompt.user must contain {text}")
    for name, template in (("system", prompt.system), ("user", prompt.user)):
        try:
            template.format(text="", max_words=1, language="English")
        except (KeyError, IndexError, ValueError) as exc:
            raise SummarizerConfigError(
                f"summarizer.prompt.{name}: bad template ({exc!r}); the fields are {{text}}, {{max_words}},"
                " {language}; write literal braces as {{ and }}"
            ) from exc


def messages(
    prompt: PromptSettings, text: str, *, max_words: int, language: str | None
) -> list[dict[str, str]]:
    """The chat messages asking for a summary of ``text``."""
    fields = {"max_words": max_words, "language": language_name(language)}
    out = []
    system = prompt.system.format(text="", **fields).strip()
    if system:
        out.append({"role": "system", "content": system})
    out.append({"role": "user", "content": prompt.user.format(text=text, **fields)})
    return out


# -- cleaning answers ------------------------------------------------------------------------------

# Chat-template markers that survive decoding as text when a tokenizer does not list them as special.
_MARKERS = re.compile(
    r"<\|[^|<>\s]{1,40}\|>|</?s>|\[/?INST\]|<<SYS>>|<</SYS>>|<(?:start|end)_of_turn>|<unk>|<pad>"
)
_ROLE_PREFIX = re.compile(
    r"^\s*(?:#{1,4}\s*)?(?:assistant|response|answer|summary|model)\s*(?::|\n)\s*", re.IGNORECASE
)
_LEAD_IN = re.compile(
    r"^\s*(?:(?:sure|certainly|okay|ok|of course|absolutely)\b[,.!]?\s*)?"
    r"(?:(?:here\s+is|here's|below\s+is|this\s+is)\s+(?:a|an|the|your|my)?\s*[^\n:]{0,60}?summary[^\n:]{0,60}:"
    r"|(?:sure|certainly|of course)[,.!]\s*$)\s*",
    re.IGNORECASE | re.MULTILINE,
)
_SENTENCE_END = re.compile(
    r"[.!?\u3002\uff01\uff1f\u2026][\"'\u201d\u2019)\]\u300d\u300f]*(?=\s|$)|[\u3002\uff01\uff1f]"
)


def cut_at_stop(text: str, stop: Sequence[str] | None) -> tuple[str, bool]:
    """``text`` up to the first stop string, and whether one was found."""
    cut = len(text)
    for marker in stop or ():
        position = text.find(marker)
        if position != -1:
            cut = min(cut, position)
    return text[:cut], cut < len(text)


def trim_unfinished(text: str) -> str:
    """Drop a trailing unfinished sentence, when at least one finished sentence comes before it."""
    text = text.rstrip()
    ends = list(_SENTENCE_END.finditer(text))
    if not ends or ends[-1].end() == len(text):
        return text
    return text[: ends[-1].end()].rstrip()


def clean_answer(text: str, *, stop: Sequence[str] | None = None) -> str:
    """An instruct model's answer as a plain summary.

    Cuts at the first stop string, removes template markers, a leading role prefix and lead-ins
    like "Sure! Here is a summary of the document:", and an unfinished last sentence (an answer cut
    by ``max_new_tokens``), then normalizes whitespace.
    """
    text, _ = cut_at_stop(text, stop)
    text = _MARKERS.sub("", text)
    for _ in range(3):
        before = text
        text = _ROLE_PREFIX.sub("", text, count=1)
        text = _LEAD_IN.sub("", text, count=1)
        if text == before:
            break
    text = trim_unfinished(text)
    paragraphs = [" ".join(part.split()) for part in re.split(r"\n\s*\n", text)]
    return "\n\n".join(part for part in paragraphs if part).strip()
