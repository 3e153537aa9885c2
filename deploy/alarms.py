"""CloudWatch alarms and a dashboard over the watch loop's metrics; created by `deploy create`,
removed by `deploy delete`.

The metrics are published by `python -m monitoring watch` / the capture sidecar's watch loop
(monitoring/analysis/watch/metrics.py: same names; deploy may not import monitoring, so they are repeated
here and a test keeps the two lists equal). Alarms watch the roll-ups with no dimension, so one
alarm covers every model of the endpoint:

* ``<endpoint>-drift-critical``: DriftAlertLevel (max over the window) >= 2 in one window period;
* ``<endpoint>-accuracy-low``: Accuracy (min) < 0.85 in one window period (only with actuals);
* ``<endpoint>-capture-dropping``: CaptureRecordsDropped (sum) > 0 in 5 minutes;
* ``<endpoint>-scores-stale``: no watch pass (WatchPasses sample count < 1) in 3 window periods,
  missing data breaching: the loop stopped.

:func:`evaluate` applies an alarm's own definition to data points, the way CloudWatch does
(moto stores alarms but never moves them to ALARM from data).
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Sequence

from deploy.errors import DeployError

DRIFT_ALERT_LEVEL = "DriftAlertLevel"
ACCURACY = "Accuracy"
WINDOW_SIZE = "WindowSize"
CAPTURE_WRITTEN = "CaptureRecordsWritten"
CAPTURE_DROPPED = "CaptureRecordsDropped"
CAPTURE_SPOOL_BYTES = "CaptureSpoolBytes"
WATCH_PASSES = "WatchPasses"
DRIFT_P_VALUE = "DriftPValue"
METRIC_NAMES = (DRIFT_ALERT_LEVEL, ACCURACY, WINDOW_SIZE, CAPTURE_WRITTEN, CAPTURE_DROPPED, CAPTURE_SPOOL_BYTES,
                WATCH_PASSES, DRIFT_P_VALUE)

NAMESPACE_PREFIX = "ModelMonitoring"
ALARM_SUFFIXES = ("drift-critical", "accuracy-low", "capture-dropping", "scores-stale")
ACCURACY_THRESHOLD = 0.85
CAPTURE_PERIOD_S = 300
STALE_WINDOWS = 3
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "GreaterThanThreshold": lambda v, t: v > t,
    "LessThanThreshold": lambda v, t: v < t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}


def default_namespace(endpoint: str) -> str:
    return f"{NAMESPACE_PREFIX}/{endpoint}"


def dashboard_name(endpoint: str) -> str:
    return f"{endpoint}-monitoring"


def period_of(every_s: int) -> int:
    """CloudWatch periods are 10, 30 or a multiple of 60 s (1 day max for alarms); a window length must be one."""
    if every_s in (10, 30) or (every_s % 60 == 0 and 60 <= every_s <= 86_400):
        return every_s
    raise DeployError(f"--watch-every {every_s}s: an alarm period must be 10 s, 30 s or a multiple of 60 s up to 1 day")


def alarm_definitions(endpoint: str, namespace: str, every_s: int, topic_arn: str | None = None) -> list[dict[str, Any]]:
    """``put_metric_alarm`` arguments of the four alarms."""
    period = period_of(every_s)
    actions = {"AlarmActions": [topic_arn], "OKActions": [topic_arn]} if topic_arn else {}

    def alarm(suffix: str, metric: str, stat: str, op: str, threshold: float, period_s: int, n: int, missing: str, what: str) -> dict[str, Any]:
        return {"AlarmName": f"{endpoint}-{suffix}", "AlarmDescription": what, "Namespace": namespace, "MetricName": metric,
                "Dimensions": [], "Statistic": stat, "Period": period_s, "EvaluationPeriods": n, "DatapointsToAlarm": n,
                "Threshold": float(threshold), "ComparisonOperator": op, "TreatMissingData": missing, **actions}

    return [
        alarm("drift-critical", DRIFT_ALERT_LEVEL, "Maximum", "GreaterThanOrEqualToThreshold", 2, period, 1, "notBreaching",
              "A scored window drifted at the critical level (two embedding methods at p <= 0.01 and one at "
              "p <= 0.001, or metadata at p <= 0.001). `python -m monitoring report` says which requests moved."),
        alarm("accuracy-low", ACCURACY, "Minimum", "LessThanThreshold", ACCURACY_THRESHOLD, period, 1, "notBreaching",
              f"Accuracy from posted actuals fell below {ACCURACY_THRESHOLD} in a window."),
        alarm("capture-dropping", CAPTURE_DROPPED, "Sum", "GreaterThanThreshold", 0, CAPTURE_PERIOD_S, 1, "notBreaching",
              "Model processes dropped capture records (queue full): drift is scored on a partial sample."),
        alarm("scores-stale", WATCH_PASSES, "SampleCount", "LessThanThreshold", 1, period, STALE_WINDOWS, "breaching",
              f"No watch pass for {STALE_WINDOWS} windows: the sidecar's loop or the cron job stopped."),
    ]


def dashboard_body(endpoint: str, namespace: str, every_s: int, region: str) -> dict[str, Any]:
    period = period_of(every_s)

    def widget(title: str, metrics: list[list[Any]], x: int, y: int, stat: str, p: int = period) -> dict[str, Any]:
        return {"type": "metric", "x": x, "y": y, "width": 12, "height": 6,
                "properties": {"title": title, "region": region, "stat": stat, "period": p, "view": "timeSeries", "metrics": metrics}}

    return {"widgets": [
        widget("Drift alert level (0 ok, 1 warning, 2 critical)", [[namespace, DRIFT_ALERT_LEVEL]], 0, 0, "Maximum"),
        widget("Accuracy (actuals)", [[namespace, ACCURACY]], 12, 0, "Minimum"),
        widget("Records per window", [[namespace, WINDOW_SIZE]], 0, 6, "Sum"),
        widget("Capture: written / dropped", [[namespace, CAPTURE_WRITTEN], [namespace, CAPTURE_DROPPED]], 12, 6, "Sum", CAPTURE_PERIOD_S),
        widget("Capture spool bytes", [[namespace, CAPTURE_SPOOL_BYTES]], 0, 12, "Maximum", CAPTURE_PERIOD_S),
        widget("Watch passes", [[namespace, WATCH_PASSES]], 12, 12, "SampleCount"),
        {"type": "text", "x": 0, "y": 18, "width": 24, "height": 3, "properties": {"markdown":
            f"Endpoint **{endpoint}**: per-model series are under dimension `Model` (and `Model, Space, Method` for "
            f"p-values) in namespace `{namespace}`. See docs/watch.md."}},
    ]}


def create(cw: Any, endpoint: str, namespace: str, every_s: int, region: str, topic_arn: str | None = None,
           log: Callable[[str], None] = print) -> list[str]:
    """Create (or update: put_metric_alarm / put_dashboard replace by name) the alarms and the dashboard."""
    names = []
    for a in alarm_definitions(endpoint, namespace, every_s, topic_arn):
        cw.put_metric_alarm(**a)
        names.append(a["AlarmName"])
    cw.put_dashboard(DashboardName=dashboard_name(endpoint), DashboardBody=json.dumps(dashboard_body(endpoint, namespace, every_s, region)))
    log(f"alarms: {', '.join(names)}; dashboard: {dashboard_name(endpoint)} (namespace {namespace})")
    return names


def delete(cw: Any, endpoint: str, log: Callable[[str], None] = print) -> list[str]:
    """Remove what :func:`create` made; one line each, like the rest of `deploy delete`."""
    names = [f"{endpoint}-{s}" for s in ALARM_SUFFIXES]
    present = [a["AlarmName"] for a in cw.describe_alarms(AlarmNames=names).get("MetricAlarms", [])]
    if present:
        cw.delete_alarms(AlarmNames=present)
    log(f"alarms: {'deleted' if present else 'absent'}")
    dash = dashboard_name(endpoint)
    found = any(d["DashboardName"] == dash for d in cw.list_dashboards(DashboardNamePrefix=dash).get("DashboardEntries", []))
    if found:
        cw.delete_dashboards(DashboardNames=[dash])
        present.append(dash)
    log(f"dashboard: {'deleted' if found else 'absent'}")
    return present


def _stat(values: Sequence[float], stat: str) -> float:
    return {"Maximum": max, "Minimum": min, "Sum": sum, "SampleCount": len,
            "Average": lambda v: sum(v) / len(v)}[stat](values)


def evaluate(alarm: dict[str, Any], datapoints: Iterable[tuple[int, float]], start_ms: int, end_ms: int) -> dict[int, str]:
    """The alarm's state after each period in [start, end) (aligned to its period), from raw data
    points ``(timestamp ms, value)``: the period's statistic against the threshold, ALARM when the
    last ``EvaluationPeriods`` periods hold ``DatapointsToAlarm`` breaching ones, missing data
    treated as the alarm says."""
    p = int(alarm["Period"]) * 1000
    buckets: dict[int, list[float]] = {}
    for ts, v in datapoints:
        if start_ms <= ts < end_ms:
            buckets.setdefault(ts // p * p, []).append(float(v))
    cmp = _COMPARE[alarm["ComparisonOperator"]]
    missing = alarm.get("TreatMissingData", "missing")
    n, m = int(alarm["EvaluationPeriods"]), int(alarm.get("DatapointsToAlarm", alarm["EvaluationPeriods"]))
    history: list[bool | None] = []
    states: dict[int, str] = {}
    for a in range(start_ms // p * p, end_ms, p):
        vals = buckets.get(a)
        if vals:
            history.append(cmp(_stat(vals, alarm["Statistic"]), float(alarm["Threshold"])))
        elif alarm["Statistic"] == "SampleCount" and missing == "breaching":
            history.append(True)
        else:
            history.append({"breaching": True, "notBreaching": False}.get(missing))
        last = history[-n:]
        known = [x for x in last if x is not None]
        if sum(known) >= m:
            states[a] = "ALARM"
        elif known:
            states[a] = "OK"
        else:
            states[a] = "INSUFFICIENT_DATA"
    return states


def evaluate_created(cw: Any, endpoint: str, start_ms: int, end_ms: int) -> dict[str, dict[int, str]]:
    """Every alarm :func:`create` made for ``endpoint``, evaluated by :func:`evaluate` on the data
    points CloudWatch (or moto) returns for its own metric, dimensions, statistic and period:
    ``{suffix: {period start ms: state}}``."""
    import datetime as dt

    out = {}
    for d in cw.describe_alarms(AlarmNames=[f"{endpoint}-{s}" for s in ALARM_SUFFIXES])["MetricAlarms"]:
        r = cw.get_metric_data(
            MetricDataQueries=[{"Id": "m", "ReturnData": True, "MetricStat": {
                "Metric": {"Namespace": d["Namespace"], "MetricName": d["MetricName"], "Dimensions": d["Dimensions"]},
                "Period": d["Period"], "Stat": d["Statistic"]}}],
            StartTime=dt.datetime.fromtimestamp(start_ms / 1000, dt.timezone.utc),
            EndTime=dt.datetime.fromtimestamp(end_ms / 1000, dt.timezone.utc))
        res = r["MetricDataResults"][0]
        points = [(int(t.timestamp() * 1000), v) for t, v in zip(res["Timestamps"], res["Values"])]
        out[d["AlarmName"][len(endpoint) + 1:]] = evaluate(d, points, start_ms, end_ms)
    return out
