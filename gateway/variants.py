"""``GET /v1/models``: the model variants this gateway serves, their weights and what is loaded."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.deps import StateDep, TenantDep
from gateway.state import VariantRuntime
from schema.api import ModelVariantList, ModelVariantPublic

router = APIRouter(prefix="/v1", tags=["models"])


def describe(variant: VariantRuntime) -> ModelVariantPublic:
    spec = variant.spec
    summarizer = variant.summarizer if variant.ready else None
    public = ModelVariantPublic(
        name=spec.name,
        weight=spec.weight,
        share=round(spec.share, 6),
        status=variant.status,  # type: ignore[arg-type]
        loaded=summarizer is not None,
        error=variant.error,
        kind=variant.params.kind if variant.params is not None else None,
        model=variant.params.model_name if variant.params is not None else spec.summarizer.model,
        backend=spec.summarizer.backend,
    )
    if summarizer is None:
        return public
    info = summarizer.info
    # Engines with adapters (LoRA) expose them as {name: sha256}; the others have none.
    adapters = getattr(summarizer, "adapters", None) or {}
    return public.model_copy(
        update={
            "kind": info.kind,
            "model": info.name,
            "sha256": info.sha256,
            "backend": info.backend,
            "quantization": info.quantization,
            "device": info.device,
            "engine_version": info.engine_version,
            "adapters": {str(name): str(digest) for name, digest in dict(adapters).items()},
        }
    )


@router.get("/models", response_model=ModelVariantList)
async def list_models(state: StateDep, _tenant: TenantDep) -> ModelVariantList:
    return ModelVariantList(data=[describe(variant) for variant in state.variants.values()])
