"""The watch loop inside the capture sidecar: one thread, started when the sidecar starts.

It runs :class:`monitoring.analysis.watch.loop.Watcher` on the sidecar's own store. Until the store holds
a baseline a pass is one LIST (nothing to score); once a baseline is saved, every closed window
is scored by exactly one of the endpoint's instances (claims in the store). With a CloudWatch
namespace the pass also publishes capture health from this sidecar's counters (records written
and dropped since the last pass, spool bytes).

Scoring needs pandas, scikit-learn and scipy: the endpoint's execution env carries them
(env/model-requirements.txt); where they are missing the loop stays off with one warning and
capture is unaffected.
"""

from __future__ import annotations

import importlib
import logging
import threading
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

SCORING_MODULES = ("pandas", "scipy", "sklearn")


@dataclass
class SidecarWatch:
    every: str = "1h"
    interval_s: float | None = None
    cloudwatch_namespace: str | None = None
    cloudwatch_mode: str = "api"
    min_window: int = 30


def missing_modules() -> list[str]:
    out = []
    for name in SCORING_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            out.append(name)
    return out


class CaptureHealth:
    """Deltas of the sidecar's written/dropped counters between calls, and the spool bytes gauge."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry
        self._last: dict[tuple[str, str], float] = {}

    def _per_model(self, family: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for metric in self.registry.collect():
            if metric.name != family:
                continue
            for s in metric.samples:
                if s.name == family + "_total":
                    m = s.labels.get("model", "?")
                    out[m] = s.value - self._last.get((family, m), 0.0)
                    self._last[(family, m)] = s.value
        return out

    def __call__(self, now_ms: int) -> Any:
        from monitoring.analysis.watch.metrics import capture_points

        spool = self.registry.get_sample_value("capture_spool_bytes") or 0.0
        return capture_points(now_ms, self._per_model("capture_records_written"), self._per_model("capture_records_dropped"), spool)


def start_watch_thread(backend: Any, registry: Any, cfg: SidecarWatch, stop: threading.Event) -> threading.Thread | None:
    """Start the loop in a daemon thread; None (and a warning) when scoring cannot run here."""
    missing = missing_modules()
    if missing:
        log.warning("watch loop off: this environment lacks %s (windows are not scored here; run "
                    "`python -m monitoring watch` elsewhere or ship them in the execution env)", ", ".join(missing))
        return None
    from monitoring.analysis.watch.cloudwatch import publishers_from
    from monitoring.analysis.watch.loop import WatchSettings, Watcher

    try:
        settings = WatchSettings(every=cfg.every, interval_s=cfg.interval_s, min_window=cfg.min_window)
        pubs = publishers_from(cfg.cloudwatch_namespace, cfg.cloudwatch_mode)
    except ValueError as e:  # a bad watch setting must not take capture down with it
        log.error("watch loop off: %s", e)
        return None
    watcher = Watcher(backend, settings, pubs, extra_points=CaptureHealth(registry) if pubs else None)

    def loop() -> None:
        while not stop.is_set():
            try:
                rep = watcher.pass_once()
                if rep.scored:
                    log.info("watch: scored %s", {m: [w["start"] for w in ws] for m, ws in rep.scored.items()})
            except Exception as e:  # noqa: BLE001 - the loop outlives a failing store; capture goes on
                log.error("watch pass failed: %s", e)
            stop.wait(settings.interval_s)

    t = threading.Thread(target=loop, name="watch", daemon=True)
    t.start()
    log.info("watch loop on: windows of %s, pass every %.0f s%s", cfg.every, settings.interval_s,
             f", CloudWatch {cfg.cloudwatch_namespace} ({cfg.cloudwatch_mode})" if pubs else "")
    return t
