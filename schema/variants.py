"""Model variants: which named model a job runs on.

A job gets its variant once, at submit: the one its ``params.model`` names, else one drawn by
weight from a hash of the job id. The draw depends on nothing but the id and the configured
weights, so re-routing the same job (a retry, an old row without a stored variant) lands on the
same variant in every process.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from schema.settings import Settings
from summarizer.errors import InvalidParamsError
from summarizer.settings import SummarizerSettings

#: The request parameter that names a variant; it is taken out before the model sees the params.
MODEL_PARAM = "model"
_HASH_SPACE = float(1 << 64)


@dataclass(frozen=True)
class VariantSpec:
    """One configured variant: its name, weight, share of weighted traffic and engine settings."""

    name: str
    weight: float
    share: float
    summarizer: SummarizerSettings


def variant_specs(settings: Settings) -> tuple[VariantSpec, ...]:
    """Every variant, in configuration order; one called ``default`` when none are configured."""
    resolved = settings.variant_summarizers()
    weights = {name: settings.variants[name].weight if settings.variants else 1.0 for name in resolved}
    total = sum(weights.values())
    return tuple(
        VariantSpec(name=name, weight=weights[name], share=weights[name] / total, summarizer=engine)
        for name, engine in resolved.items()
    )


def hash_unit(job_id: str) -> float:
    """A number in [0, 1) fixed by ``job_id``, spread evenly over ids."""
    digest = hashlib.sha256(job_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / _HASH_SPACE


def pick_by_weight(job_id: str, specs: Sequence[VariantSpec]) -> str:
    """The variant the weights give ``job_id``: its hash placed on the cumulative shares."""
    point = hash_unit(job_id) * sum(spec.weight for spec in specs)
    running = 0.0
    chosen = None
    for spec in specs:
        if spec.weight <= 0:
            continue
        chosen = spec.name
        running += spec.weight
        if point < running:
            return spec.name
    if chosen is None:
        raise ValueError("no variant has a weight above 0")
    # Rounding can leave the point a hair above the last boundary; it belongs to the last variant.
    return chosen


def split_model_param(params: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """``params`` without ``model``, and the variant it named (None when absent)."""
    rest = dict(params)
    named = rest.pop(MODEL_PARAM, None)
    if named is not None and not isinstance(named, str):
        raise InvalidParamsError(f"parameter '{MODEL_PARAM}' must be a string naming a model variant")
    return named, rest
