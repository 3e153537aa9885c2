"""The watch loop: find the windows that closed (or changed), claim, score, publish, record.

One pass, per model (``models`` or every model with a baseline in the store):

1. count the records of each closed window of the lookback (only ``ts_ms`` is read);
2. a window is due when it has records and the ledger has no entry with that count;
3. claim each due window in the store (one scorer among N sidecars), score the claimed ones in
   one call of the engine (:mod:`.engine`), publish every window's metrics, then write the
   ledger -- after publishing, so a failed publish is retried on the next pass.

The same code runs in ``python -m monitoring watch`` and inside the capture sidecar.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from monitoring.analysis.artifacts import ROOT
from monitoring.analysis.scoring.windows import Window, iso, parse_every

from . import engine, lease, ledger
from .metrics import Batch, heartbeat, run_points, window_alert_level

log = logging.getLogger(__name__)

DEFAULT_EVERY = "1h"
DEFAULT_LOOKBACK_WINDOWS = 48
DEFAULT_MIN_WINDOW = 30


@dataclass
class WatchSettings:
    every: str = DEFAULT_EVERY
    models: Sequence[str] | None = None          # None: every model with a baseline
    lookback_windows: int = DEFAULT_LOOKBACK_WINDOWS
    since_ms: int | None = None                   # start here instead of the lookback
    min_window: int = DEFAULT_MIN_WINDOW
    claim_ttl_s: float = lease.DEFAULT_TTL_S
    interval_s: float | None = None               # between passes; default a quarter window, 5 s .. 5 min

    def __post_init__(self) -> None:
        self.every_ms = parse_every(self.every)
        if self.lookback_windows < 1:
            raise ValueError(f"--lookback {self.lookback_windows}: at least 1 window")
        if self.min_window < 1:
            raise ValueError(f"--min-window {self.min_window}: at least 1 record")
        if self.interval_s is None:
            self.interval_s = min(300.0, max(5.0, self.every_ms / 4000))
        elif self.interval_s <= 0:
            raise ValueError(f"--interval {self.interval_s}: must be positive seconds")


@dataclass
class PassReport:
    now_ms: int
    models: list[str] = field(default_factory=list)
    scored: dict[str, list[dict[str, Any]]] = field(default_factory=dict)   # model -> [{start, end, n, level}]
    claimed_elsewhere: int = 0
    errors: list[str] = field(default_factory=list)
    published: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"now": iso(self.now_ms), "models": self.models, "scored": self.scored,
                "claimed_elsewhere": self.claimed_elsewhere, "published": self.published, "errors": self.errors}


def models_with_baseline(backend: Any) -> list[str]:
    seen = set()
    for e in backend.list(f"{ROOT}/baselines/"):
        head = e.key[len(f"{ROOT}/baselines/"):].split("/", 1)[0]
        if head.startswith("model="):
            seen.add(head[len("model="):])
    return sorted(seen)


class Watcher:
    def __init__(self, backend: Any, settings: WatchSettings, publishers: Sequence[Callable[[Batch], int]] = (),
                 *, owner: str | None = None, extra_points: Callable[[int], Batch] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.backend, self.settings = backend, settings
        self.publishers = list(publishers)
        self.owner = owner or lease.default_owner()
        self.extra_points = extra_points
        self.clock = clock

    def models(self) -> list[str]:
        return list(self.settings.models) if self.settings.models else models_with_baseline(self.backend)

    def window_states(self, model: str, now_ms: int) -> list[ledger.WindowState]:
        """Closed windows of the lookback with their record counts (empty windows left out)."""
        from monitoring.ingest.store.reader import read_records

        every = self.settings.every_ms
        until = (now_ms // every) * every  # aligned like `score --every`: the last closed window ends here
        since = until - self.settings.lookback_windows * every
        if self.settings.since_ms is not None:
            since = (self.settings.since_ms // every) * every
        if until <= since:
            return []
        ts = np.sort(np.asarray(read_records(self.backend, model, since, until, columns=["ts_ms"])["ts_ms"].to_numpy(), np.int64))
        out = []
        if ts.size == 0:
            return out
        first = max(since, (int(ts[0]) // every) * every)
        for a in range(first, until, every):
            n = int(np.searchsorted(ts, a + every) - np.searchsorted(ts, a))
            if n:
                out.append(ledger.WindowState(a, a + every, n))
        return out

    def due(self, model: str, now_ms: int) -> list[ledger.WindowState]:
        done = ledger.scored_states(self.backend, model)
        return [s for s in self.window_states(model, now_ms) if s not in done]

    def pass_once(self, now_ms: int | None = None) -> PassReport:
        now = int(self.clock() * 1000) if now_ms is None else int(now_ms)
        rep = PassReport(now)
        rep.models = self.models()
        for model in rep.models:
            try:
                self._model_pass(model, now, rep)
            except Exception as e:  # noqa: BLE001 - one model's failure must not stop the others
                rep.errors.append(f"{model}: {type(e).__name__}: {e}")
                # A part merged away by compaction between listing and reading (seen in `make
                # rehearse`): nothing was recorded, the window is scored on the next pass.
                moved = isinstance(e, FileNotFoundError) or "NoSuchKey" in str(e)
                log.log(logging.WARNING if moved else logging.ERROR, "watch: scoring %s failed%s: %s", model,
                        " (a store file moved while it was read; retried next pass)" if moved else "", e,
                        exc_info=log.isEnabledFor(logging.DEBUG))
        extra = Batch()
        if rep.models:
            extra.points += heartbeat(now, rep.models).points
        if self.extra_points is not None:
            try:
                extra.points += self.extra_points(now).points
            except Exception as e:  # noqa: BLE001
                rep.errors.append(f"capture health: {type(e).__name__}: {e}")
        rep.published += max(0, self._publish(extra, rep))
        return rep

    def _model_pass(self, model: str, now: int, rep: PassReport) -> None:
        due = self.due(model, now)
        mine = []
        for s in due:
            if lease.claim(self.backend, model, s, self.owner, ttl_s=self.settings.claim_ttl_s, now_ms=now):
                mine.append(s)
            else:
                rep.claimed_elsewhere += 1
        if not mine:
            return
        windows = [Window(iso(s.start_ms), s.start_ms, s.end_ms) for s in mine]
        run, saved = engine.score_windows(self.backend, model, windows, min_window=self.settings.min_window)
        n = self._publish(run_points(run), rep)
        if n < 0:
            return  # not recorded: scored again (and published) on the next pass
        rep.published += n
        by_start = {int(w.start_ms): w for w in run.windows}
        for s in mine:
            w = by_start.get(s.start_ms)
            scored = w is not None and w.scored
            level = window_alert_level(w) if scored else 0
            ledger.record_scored(self.backend, model, s, {"scored_ms": now, "owner": self.owner, "run": saved,
                                                          "n": None if w is None else w.n, "scored": scored,
                                                          "any_drift": bool(w is not None and w.any_drift), "alert_level": level})
            rep.scored.setdefault(model, []).append({"start": iso(s.start_ms), "end": iso(s.end_ms), "records": s.records,
                                                     "scored": scored, "alert_level": level})
        log.info("watch: %s: scored %d window(s) (%s)", model, len(mine), saved)

    def _publish(self, batch: Batch, rep: PassReport) -> int:
        """Points sent by every publisher (max over publishers), or -1 when one failed."""
        if not batch.points:
            return 0
        sent = 0
        for pub in self.publishers:
            try:
                sent = max(sent, pub(batch))
            except Exception as e:  # noqa: BLE001 - e.g. CloudWatch unreachable: retried next pass
                rep.errors.append(f"publish: {type(e).__name__}: {e}")
                log.error("watch: publishing %d points failed: %s", len(batch.points), e)
                return -1
        return sent

    def run(self, stop: threading.Event, on_pass: Callable[[PassReport], None] | None = None) -> None:
        """Pass after pass until ``stop`` is set."""
        while not stop.is_set():
            rep = self.pass_once()
            if on_pass is not None:
                on_pass(rep)
            stop.wait(self.settings.interval_s)
