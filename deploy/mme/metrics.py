"""Per-model cold-start and cache metrics of the local MME, in Prometheus text on `GET /metrics`.

SageMaker's CloudWatch metrics for an MME (ModelLoadingWaitTime, ModelDownloadingTime,
ModelUnloadingTime, LoadedModelCount, ModelCacheHit) are per endpoint, not per model; these are
per TargetModel, read from the cache at scrape time (nothing to update on the request path):

    mme_model_loads_total{model}                 Triton loads
    mme_model_unloads_total{model}               unloads (DELETE /models/<m> and evictions)
    mme_model_evictions_total{model}             unloads to stay in the memory budget
    mme_model_coldstart_seconds_total{model,phase}  summed over every load; phase = fetch
                                                 (download/copy), extract (safe extraction),
                                                 load (Triton load incl. env unpack + runtime load),
                                                 first_response (first request after a load)
    mme_model_last_coldstart_seconds{model,phase}  the latest load's figures
    mme_model_footprint_bytes{model}             what the LRU budget counts (RSS or disk)
    mme_models_loaded                            models READY or LOADING
    mme_memory_used_bytes, mme_memory_budget_bytes
    mme_model_refusals_total{model}              invocations refused with 503 + Retry-After because the
                                                 model's Triton queue was full or the request timed out
                                                 in it (Triton's own metrics do not count a full queue)

Average load time of a model: rate(mme_model_coldstart_seconds_total{phase="load"}[1h]) /
rate(mme_model_loads_total[1h]).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from deploy.mme.cache import ModelCache

PHASES = {"fetch_s": "fetch", "extract_s": "extract", "load_s": "load", "first_response_s": "first_response"}


class CacheCollector:
    def __init__(self, cache: ModelCache) -> None:
        self.cache = cache

    def collect(self) -> Iterator[Metric]:
        stats = self.cache.stats()
        for name, key, text in (("mme_model_loads", "loads", "Triton loads of the model"),
                                ("mme_model_unloads", "unloads", "Unloads of the model (DELETE and evictions)"),
                                ("mme_model_evictions", "evictions", "Unloads to stay in the memory budget")):
            family = CounterMetricFamily(name, text, labels=["model"])
            for model, n in sorted(stats[key].items()):
                family.add_metric([model], n)
            yield family
        total = CounterMetricFamily("mme_model_coldstart_seconds", "Seconds spent in each cold-start phase, all loads",
                                    labels=["model", "phase"])
        sums: dict[tuple[str, str], float] = {}
        for cold in stats["coldstarts"]:
            for key, phase in PHASES.items():
                if key in cold["timings"]:
                    sums[(cold["model"], phase)] = sums.get((cold["model"], phase), 0.0) + cold["timings"][key]
        for (model, phase), seconds in sorted(sums.items()):
            total.add_metric([model, phase], seconds)
        yield total
        last = GaugeMetricFamily("mme_model_last_coldstart_seconds", "The latest cold start of the model, per phase",
                                 labels=["model", "phase"])
        footprint = GaugeMetricFamily("mme_model_footprint_bytes", "Memory the budget counts for the model",
                                      labels=["model"])
        loaded = 0
        for rec in stats["models"]:
            for key, phase in PHASES.items():
                if key in rec["timings"]:
                    last.add_metric([rec["modelName"], phase], rec["timings"][key])
            footprint.add_metric([rec["modelName"]], rec["footprintBytes"])
            loaded += rec["state"] in ("READY", "LOADING")
        yield last
        yield footprint
        yield GaugeMetricFamily("mme_models_loaded", "Models loaded or loading", value=loaded)
        yield GaugeMetricFamily("mme_memory_used_bytes", "Footprint of the loaded models", value=stats["usedBytes"])
        if stats["budgetBytes"] is not None:
            yield GaugeMetricFamily("mme_memory_budget_bytes", "LRU unloading threshold", value=stats["budgetBytes"])


class RefusalCollector:
    """`mme_model_refusals_total{model}` from a dict the endpoint increments on each refusal."""

    def __init__(self, refusals: dict[str, int]) -> None:
        self.refusals = refusals

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("mme_model_refusals", "Invocations refused (503 + Retry-After): the model's "
                                     "queue was full or the request timed out in it", labels=["model"])
        for model, n in sorted(dict(self.refusals).items()):
            family.add_metric([model], n)
        yield family


def registry_for(cache: ModelCache, refusals: dict[str, int] | None = None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CacheCollector(cache))
    if refusals is not None:
        registry.register(RefusalCollector(refusals))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
