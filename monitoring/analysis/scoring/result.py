"""A scoring run as typed values: :class:`ScoreRun` of :class:`WindowScore` of :class:`MethodScore`.

Both engines (rows in memory, or mergeable states streamed partition by partition) build these;
``to_json()`` gives exactly the dict ``monitoring score --json`` prints and ``save_scores``
writes, and ``from_json()`` reads a saved run back (the report, the exporter and the CLI read
runs through it rather than by string keys).

What is typed is what every consumer reads: verdicts, p-values, sizes, times, the page level.
The per-space tables, explanations, settings/outputs detail and prompts stay a plain JSON
mapping (``details``): they are rendered, not computed with, and their shape belongs to the
detectors that write them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from monitoring.analysis.alerts.levels import page_level

from .windows import iso

#: Keys of a window's JSON that are fields of WindowScore (everything else goes to ``details``).
_WINDOW_FIELDS = ("label", "start", "end", "start_ms", "end_ms", "n", "scored", "any_drift", "drifted", "methods",
                  "engine", "page")
_RUN_FIELDS = ("model", "store", "created_at", "created_ms", "baseline", "detectors", "windowing", "has_actuals", "windows")


@dataclass(frozen=True)
class MethodScore:
    """One detector's verdict on one window (``space``: embedding space, or metadata/settings/outputs)."""

    method: str
    space: str
    statistic: float | None
    threshold: float | None
    p_value: float | None
    is_drift: bool
    window_size: int

    def to_json(self) -> dict[str, Any]:
        return {"statistic": self.statistic, "threshold": self.threshold, "p_value": self.p_value,
                "is_drift": self.is_drift, "window_size": self.window_size, "space": self.space}

    @classmethod
    def from_json(cls, method: str, d: Mapping[str, Any]) -> "MethodScore":
        return cls(method=method, space=str(d.get("space", "")),
                   statistic=None if d.get("statistic") is None else float(d["statistic"]),
                   threshold=None if d.get("threshold") is None else float(d["threshold"]),
                   p_value=None if d.get("p_value") is None else float(d["p_value"]),
                   is_drift=bool(d.get("is_drift")), window_size=int(d.get("window_size") or 0))

    @classmethod
    def from_result(cls, method: str, space: str, r: Any) -> "MethodScore":
        """From a :class:`monitoring.analysis.drift.result.DriftResult`."""
        return cls(method=method, space=space, statistic=None if r.statistic is None else float(r.statistic),
                   threshold=None if r.threshold is None else float(r.threshold),
                   p_value=None if r.p_value is None else float(r.p_value),
                   is_drift=bool(r.is_drift), window_size=int(r.window_size))


@dataclass
class WindowScore:
    """One window's verdict. ``methods``: the primary space's detectors and the model-level ones.

    ``engine`` says how it was scored: ``"rows"`` (the window's records in memory) or ``"states"``
    (mergeable per-partition states, streamed; row-level explanations are then left out).
    ``page`` is what pages a human (:func:`monitoring.analysis.alerts.levels.page_level`): ok/warning/critical.
    """

    label: str
    start_ms: int
    end_ms: int
    n: int
    scored: bool
    any_drift: bool = False
    drifted: list[str] = field(default_factory=list)
    methods: dict[str, MethodScore] = field(default_factory=dict)
    engine: str = "rows"
    details: dict[str, Any] = field(default_factory=dict)
    #: the detectors' DriftResults (``keep_results=True`` only; never serialised)
    results: dict[str, Any] | None = None

    @property
    def page(self) -> str:
        return page_level({k: m.to_json() for k, m in self.methods.items()}) if self.scored else "ok"

    def p_values(self) -> dict[str, float | None]:
        return {k: m.p_value for k, m in self.methods.items()}

    def detail(self, key: str, default: Any = None) -> Any:
        """A rendered-only part of the window (``spaces``, ``explanation``, ``accuracy``, ...)."""
        value = self.details.get(key)
        return default if value is None else value

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "start": iso(self.start_ms), "end": iso(self.end_ms),
                               "start_ms": int(self.start_ms), "end_ms": int(self.end_ms)}
        # today's key order: the details written by the scorer first, verdict fields in between
        for k, v in self.details.items():
            out[k] = v
        out.update(n=int(self.n), scored=bool(self.scored), any_drift=bool(self.any_drift), drifted=list(self.drifted),
                   methods={k: m.to_json() for k, m in self.methods.items()}, engine=self.engine, page=self.page)
        if self.results is not None:
            out["_results"] = self.results
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "WindowScore":
        details = {k: v for k, v in d.items() if k not in _WINDOW_FIELDS and k != "_results"}
        return cls(label=str(d.get("label", "")), start_ms=int(d.get("start_ms") or 0), end_ms=int(d.get("end_ms") or 0),
                   n=int(d.get("n") or 0), scored=bool(d.get("scored")), any_drift=bool(d.get("any_drift")),
                   drifted=list(d.get("drifted") or []),
                   methods={k: MethodScore.from_json(k, v) for k, v in (d.get("methods") or {}).items()},
                   engine=str(d.get("engine", "rows")), details=details, results=d.get("_results"))


@dataclass
class ScoreRun:
    """A scoring run: the model, the baseline it was scored against, and its windows in order."""

    model: str
    store: str
    created_at: str
    created_ms: int
    baseline: dict[str, Any]
    detectors: dict[str, Any]
    windowing: dict[str, Any]
    has_actuals: bool
    windows: list[WindowScore]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def latest(self) -> WindowScore | None:
        """The last window that was scored (None if none was)."""
        return next((w for w in reversed(self.windows) if w.scored), None)

    def to_json(self, *, keep_results: bool = True) -> dict[str, Any]:
        out = {"model": self.model, "store": self.store, "created_at": self.created_at, "created_ms": int(self.created_ms),
               "baseline": self.baseline, "detectors": self.detectors, "windowing": self.windowing,
               "has_actuals": bool(self.has_actuals), "windows": []}
        for w in self.windows:
            j = w.to_json()
            if not keep_results:
                j.pop("_results", None)
            out["windows"].append(j)
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "ScoreRun":
        return cls(model=str(d["model"]), store=str(d.get("store", "")), created_at=str(d.get("created_at", "")),
                   created_ms=int(d.get("created_ms") or 0), baseline=dict(d.get("baseline") or {}),
                   detectors=dict(d.get("detectors") or {}), windowing=dict(d.get("windowing") or {}),
                   has_actuals=bool(d.get("has_actuals")), windows=[WindowScore.from_json(w) for w in d.get("windows", [])],
                   extra={k: v for k, v in d.items() if k not in _RUN_FIELDS})


def as_run(run: "ScoreRun | Mapping[str, Any]") -> ScoreRun:
    """The typed run of ``run``: a :class:`ScoreRun` as is, or one read from its JSON (a saved run)."""
    return run if isinstance(run, ScoreRun) else ScoreRun.from_json(run)
