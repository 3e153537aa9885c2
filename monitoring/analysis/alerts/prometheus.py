"""Drift scores as Prometheus gauges, read from the store's ``latest.json`` at scrape time.

Metrics (the latest *scored* window of each model's latest ``score`` run)::

    drift_statistic{model, method}      the method's statistic
    drift_threshold{model, method}      its threshold calibrated to the window size
    drift_p_value{model, method}
    drift_is_drift{model, method}       1 if the method alarmed, else 0
    drift_alert_level{model, method}    0 ok, 1 warning (p <= 0.01), 2 critical (p <= 0.001); see levels.py
    drift_window_size{model}            rows scored in that window
    drift_window_end_timestamp_seconds{model}
    drift_any{model}                    1 if any method alarmed
    drift_page_level{model}             what pages for that window (levels.page_level): 0 ok, 1 warning, 2 critical
    model_accuracy{model}               accuracy from posted actuals (absent without actuals)
    model_accuracy_labeled{model}       how many labelled predictions it rests on
    drift_scores_run_timestamp_seconds{model}  when the run was made (staleness)
    drift_space_statistic{model, space, method}   per embedding space (image, prompt, output):
    drift_space_threshold / drift_space_p_value / drift_space_is_drift{model, space, method}
    drift_space_any{model, space}, drift_space_window_size{model, space}
    generative_output_share{model, check}   share of failed / blank / nonfinite outputs
    model_estimated_accuracy{model, bound}  label-free accuracy of the latest window (issue 23):
                                            bound="estimate", "low", "high" (95 % band), "reference"
                                            (the baseline's accuracy it is compared with)
    drift_segment_any{model, by, segment}   with `score --by`: 1 if the segment alarmed (Bonferroni-corrected)
    drift_segment_window_size{model, by, segment}  records of the segment in the latest window
    data_quality_error_share{model, kind}   latest window: kind="all" (any error), "decode", or an error code
    data_quality_image_mode_share{model, mode}  latest window: share of input images per mode as sent

Wiring (one line where the sidecar builds its registry)::

    from monitoring.analysis.alerts import export_scores
    export_scores(sidecar.metrics.registry, sidecar.backend)
"""

from __future__ import annotations

import logging
import time
from typing import Any, Iterable

from monitoring.analysis.artifacts import ROOT, read_json
from monitoring.ingest.store.backend import open_backend

from .levels import LEVEL_RANK, level_of

log = logging.getLogger(__name__)

METHOD_GAUGES = (
    ("drift_statistic", "statistic", "Drift statistic of the latest scored window, per method."),
    ("drift_threshold", "threshold", "Alarm threshold calibrated to the latest window's size, per method."),
    ("drift_p_value", "p_value", "p-value of the latest window's drift test, per method."),
    ("drift_is_drift", "is_drift", "1 if the method flagged the latest window as drifted."),
)


def latest_window(run: Any) -> Any:
    """The latest scored window (a typed ``WindowScore``) of a run (typed, or a saved run's JSON)."""
    from monitoring.analysis.scoring.result import as_run  # noqa: PLC0415 - the exporter also runs without scoring

    return as_run(run).latest


class DriftScoresCollector:
    """A custom collector: every scrape reads ``_monitoring/scores/model=*/latest.json``.

    The scores prefix also holds every past run, so a long-running exporter (the sidecar passes
    60 s) lists it at most once per ``list_interval_s`` (a new model's scores appear within that
    time); the few ``latest.json`` files found are read on every scrape, so a new run of a known
    model shows at once. 0 lists on every scrape."""

    def __init__(self, store: Any, s3_endpoint_url: str | None = None, list_interval_s: float = 0.0) -> None:
        self.backend = open_backend(store, s3_endpoint_url)
        self.list_interval_s = list_interval_s
        self._keys: list[str] = []
        self._listed_at: float | None = None

    def latest_keys(self) -> list[str]:
        now = time.monotonic()
        if self._listed_at is None or now - self._listed_at >= self.list_interval_s:
            self._keys = sorted(e.key for e in self.backend.list(f"{ROOT}/scores/") if e.key.endswith("/latest.json"))
            self._listed_at = now
        return self._keys

    def runs(self) -> list[dict[str, Any]]:
        out = []
        for key in self.latest_keys():
            try:
                out.append(read_json(self.backend, key))
            except Exception as exc:  # a scrape must not fail because of one bad file
                log.warning("cannot read %s: %s", key, exc)
        return out

    def describe(self) -> list:
        return []  # unchecked collector: families vary with the models present

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import GaugeMetricFamily

        fams = {name: GaugeMetricFamily(name, doc, labels=["model", "method"]) for name, _, doc in METHOD_GAUGES}
        size = GaugeMetricFamily("drift_window_size", "Rows scored in the latest window.", labels=["model"])
        end = GaugeMetricFamily("drift_window_end_timestamp_seconds", "End of the latest scored window.", labels=["model"])
        anyd = GaugeMetricFamily("drift_any", "1 if any method flagged the latest window.", labels=["model"])
        acc = GaugeMetricFamily("model_accuracy", "Accuracy of the latest window with actuals.", labels=["model"])
        nlab = GaugeMetricFamily("model_accuracy_labeled", "Labelled predictions behind model_accuracy.", labels=["model"])
        level = GaugeMetricFamily("drift_alert_level", "Alert level of the latest window per method: 0 ok, 1 warning, 2 critical.",
                                  labels=["model", "method"])
        run_ts = GaugeMetricFamily("drift_scores_run_timestamp_seconds", "When the latest scoring run was made.", labels=["model"])
        page = GaugeMetricFamily("drift_page_level", "What pages for the latest window (levels.page_level, the alerts.yml rule): "
                                 "0 ok, 1 warning, 2 critical.", labels=["model"])
        try:
            runs = self.runs()
        except Exception as exc:  # store unreachable: publish nothing rather than break /metrics
            log.warning("cannot list drift scores: %s", exc)
            runs = []
        from monitoring.analysis.scoring.result import ScoreRun  # noqa: PLC0415 - the exporter also runs without scoring

        typed = []
        for raw in runs:
            try:
                run = ScoreRun.from_json(raw)
            except (KeyError, TypeError, ValueError) as exc:  # one malformed run must not break /metrics
                log.warning("cannot read a scoring run of %s: %s", raw.get("model"), exc)
                continue
            typed.append(run)
            model = run.model
            run_ts.add_metric([model], run.created_ms / 1000.0)
            w = run.latest
            if w is None:
                continue
            for method, m in w.methods.items():
                r = m.to_json()
                for name, key, _ in METHOD_GAUGES:
                    v = r.get(key)
                    if v is not None:
                        fams[name].add_metric([model, method], float(v))
                level.add_metric([model, method], float(LEVEL_RANK[level_of(r)]))
            size.add_metric([model], float(w.n))
            end.add_metric([model], w.end_ms / 1000.0)
            anyd.add_metric([model], 1.0 if w.any_drift else 0.0)
            page.add_metric([model], float(LEVEL_RANK[w.page]))
            labeled = [x for x in run.windows if x.detail("accuracy") is not None]
            if labeled:
                acc.add_metric([model], float(labeled[-1].detail("accuracy")))
                nlab.add_metric([model], float(labeled[-1].detail("n_labeled", 0)))
        yield from fams.values()
        yield from (level, size, end, anyd, acc, nlab, run_ts, page)
        yield from space_families(typed)
        yield estimated_accuracy_family(typed)
        yield from segment_families(typed)
        yield from quality_families(typed)


def quality_families(runs: list[Any]) -> list[Any]:
    """The data-quality view of the latest window of each run (issue 23; typed runs)."""
    from prometheus_client.core import GaugeMetricFamily

    err = GaugeMetricFamily("data_quality_error_share", "Share of the latest window's records that failed: kind = all, "
                            "decode, or an error code.", labels=["model", "kind"])
    modes = GaugeMetricFamily("data_quality_image_mode_share", "Share of the latest window's input images per mode as sent.",
                              labels=["model", "mode"])
    for run in runs:
        wins = [w for w in run.windows if w.detail("data_quality")]
        if not wins:
            continue
        model, q = str(run.model), wins[-1].detail("data_quality")
        n = q.get("n_records") or 0
        err.add_metric([model, "all"], float(q.get("error_share", 0.0)))
        err.add_metric([model, "decode"], float(q.get("decode_failure_share", 0.0)))
        for code, c in (q.get("errors_by_code") or {}).items():
            err.add_metric([model, code], c / n if n else 0.0)
        for mode, share in (q.get("image_modes") or {}).items():
            modes.add_metric([model, mode], float(share))
    return [err, modes]


def segment_families(runs: list[Any]) -> list[Any]:
    """Per-segment verdicts of the latest scored window of a ``score --by`` run (issue 23; typed runs)."""
    from prometheus_client.core import GaugeMetricFamily

    anyd = GaugeMetricFamily("drift_segment_any", "1 if the segment alarmed in the latest window (score --by; "
                             "Bonferroni across segments).", labels=["model", "by", "segment"])
    size = GaugeMetricFamily("drift_segment_window_size", "Records of the segment in the latest window.",
                             labels=["model", "by", "segment"])
    for run in runs:
        w = run.latest
        seg = None if w is None else w.detail("segments")
        if not seg:
            continue
        for sv in seg.get("segments", []):
            labels = [str(run.model), str(seg.get("by")), str(sv.get("value"))]
            anyd.add_metric(labels, 1.0 if sv.get("any_drift") else 0.0)
            size.add_metric(labels, float(sv.get("n_records", 0)))
    return [anyd, size]


def estimated_accuracy_family(runs: list[Any]) -> Any:
    """``model_estimated_accuracy{model, bound}`` of each model's latest scored window with an estimate (typed runs)."""
    from prometheus_client.core import GaugeMetricFamily

    fam = GaugeMetricFamily("model_estimated_accuracy", "Label-free accuracy estimate of the latest window (bound: estimate, "
                            "low, high = 95 % band, reference = baseline accuracy).", labels=["model", "bound"])
    for run in runs:
        est = [w.detail("accuracy_estimate") for w in run.windows
               if w.detail("accuracy_estimate", {}).get("estimated_accuracy") is not None]
        if not est:
            continue
        e = est[-1]
        for bound, key in (("estimate", "estimated_accuracy"), ("low", "low"), ("high", "high"), ("reference", "reference_accuracy")):
            if e.get(key) is not None:
                fam.add_metric([str(run.model), bound], float(e[key]))
    return fam


def space_families(runs: list[Any]) -> list[Any]:
    """Per-space gauges (several embedding spaces per model) and generative output shares (typed runs)."""
    from prometheus_client.core import GaugeMetricFamily

    from monitoring.analysis.scoring.result import MethodScore  # noqa: PLC0415 - the exporter also runs without scoring

    fams = {name: GaugeMetricFamily(name.replace("drift_", "drift_space_"), doc + " Per embedding space.",
                                    labels=["model", "space", "method"]) for name, _, doc in METHOD_GAUGES}
    anyd = GaugeMetricFamily("drift_space_any", "1 if any method flagged the space in the latest window.", labels=["model", "space"])
    size = GaugeMetricFamily("drift_space_window_size", "Rows of the latest window scored in the space.", labels=["model", "space"])
    share = GaugeMetricFamily("generative_output_share", "Share of failed / blank / nonfinite outputs in the latest window.",
                              labels=["model", "check"])
    for run in runs:
        model = str(run.model)
        w = run.latest
        if w is None:
            continue
        for space, sp in w.detail("spaces", {}).items():
            if not sp.get("scored"):
                continue
            for method, raw in sp.get("methods", {}).items():
                r = MethodScore.from_json(method, raw)
                for name, key, _ in METHOD_GAUGES:
                    v = getattr(r, key)
                    if v is not None:
                        fams[name].add_metric([model, space, method], float(v))
            anyd.add_metric([model, space], 1.0 if sp.get("any_drift") else 0.0)
            size.add_metric([model, space], float(sp.get("n", 0)))
        for c in w.detail("outputs", {}).get("checks", []):
            if c.get("window_share") is not None:
                share.add_metric([model, c["check"]], float(c["window_share"]))
    return [*fams.values(), anyd, size, share]


def export_scores(registry: Any, store: Any, s3_endpoint_url: str | None = None,
                  list_interval_s: float = 0.0) -> DriftScoresCollector:
    """Register a :class:`DriftScoresCollector` for ``store`` on ``registry`` and return it."""
    c = DriftScoresCollector(store, s3_endpoint_url, list_interval_s)
    registry.register(c)
    return c
