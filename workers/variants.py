"""One loaded model per variant in a worker: loaded once, on first use or at start.

A variant whose model fails to load answers every later request with the same retryable error, so
its jobs are retried (perhaps on a worker where it loads) while the other variants keep running.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from schema.settings import DEFAULT_VARIANT
from schema.store.records import JobRecord
from schema.variants import VariantSpec, pick_by_weight
from summarizer import Summarizer, SummarizerSettings, load_summarizer
from summarizer.errors import SummarizerConfigError, SummarizerUnavailableError

log = logging.getLogger(__name__)

Loader = Callable[[SummarizerSettings], Summarizer]


class VariantModels:
    def __init__(self, specs: Sequence[VariantSpec], *, load: Loader = load_summarizer) -> None:
        if not specs:
            raise ValueError("at least one variant is needed")
        self.specs = {spec.name: spec for spec in specs}
        self._load = load
        self._loaded: dict[str, Summarizer] = {}
        self._failed: dict[str, SummarizerUnavailableError] = {}
        self._lock = threading.Lock()
        # Set by single(): one model stands in for every variant name.
        self._only: Summarizer | None = None

    @classmethod
    def single(cls, summarizer: Summarizer) -> VariantModels:
        """One model for whatever variant a job names (a worker without variants, tests)."""
        models = cls([VariantSpec(DEFAULT_VARIANT, 1.0, 1.0, SummarizerSettings())])
        models._only = summarizer
        return models

    @classmethod
    def at_start(cls, specs: Sequence[VariantSpec], *, load: Loader = load_summarizer) -> VariantModels:
        """Every variant loaded now; one that fails is left to fail its jobs retryably, the others run.

        Raises :class:`SummarizerConfigError` when none loads: the worker then fails to start, as
        with a broken model before variants, and the jobs wait in the queue instead of burning
        their retries on a worker that can run nothing.
        """
        models = cls(specs, load=load)
        statuses = models.load_all()
        if "ok" not in statuses.values():
            failures = "; ".join(f"{name}: {status}" for name, status in statuses.items())
            raise SummarizerConfigError(f"no model variant could be loaded ({failures})")
        return models

    def variant_of(self, job: JobRecord) -> str:
        """The job's stored variant; rows from before variants get the weights' pick for their id."""
        if job.variant:
            return job.variant
        return pick_by_weight(job.id, list(self.specs.values()))

    def get(self, name: str) -> Summarizer:
        """The model of variant ``name``, loading it if need be.

        Raises :class:`SummarizerUnavailableError` (retryable) when the variant is not configured
        here or its model failed to load.
        """
        if self._only is not None:
            return self._only
        with self._lock:
            found = self._loaded.get(name)
            if found is not None:
                return found
            failed = self._failed.get(name)
            if failed is not None:
                raise failed
            spec = self.specs.get(name)
            if spec is None:
                # A job routed by a gateway with another configuration (a rolling change): retry it,
                # a worker that knows the variant may take it.
                raise SummarizerUnavailableError(f"model variant {name!r} is not configured on this worker")
            try:
                loaded = self._load(spec.summarizer)
            except Exception as exc:
                log.exception("the model of variant %r failed to load", name)
                error = SummarizerUnavailableError(f"the model of variant {name!r} failed to load: {exc}")
                self._failed[name] = error
                raise error from exc
            log.info("model of variant %r loaded: %s", name, loaded.info.as_dict())
            self._loaded[name] = loaded
            return loaded

    def load_all(self) -> dict[str, str]:
        """Load every variant now; returns the status of each ("ok" or the error)."""
        statuses: dict[str, str] = {}
        for name in self.specs:
            try:
                self.get(name)
            except SummarizerUnavailableError as exc:
                statuses[name] = exc.message
            else:
                statuses[name] = "ok"
        return statuses
