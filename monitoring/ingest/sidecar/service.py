"""The capture sidecar: moves spool segments into the Parquet store, one per host.

Loop: list finished segments (``<spool>/<model>/*.jsonl``, oldest first) -> decode ->
validate against the schema -> write one Parquet part per touched partition (atomic) ->
optionally export Data Capture JSON lines -> delete the segment. A segment is deleted only
after everything it produced is durable, so a crash anywhere loses nothing; re-ingesting a
segment overwrites the same part name (no duplicates). While the store is failing (disk
full, S3 unreachable) segments stay in the spool and the write is retried with exponential
backoff; the model processes are never affected (they only write the spool).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

# The score gauges read saved artefacts only (numpy + pyarrow, no pandas/scikit-learn: the
# execution env's sidecar imports it; tests/monitoring/ingest/sidecar checks it stays that light).
from monitoring.analysis.alerts import export_scores
from monitoring.capture.fields import MODEL_NAME_RE
from monitoring.capture.private import private_dir
from monitoring.capture.segments import SEGMENT_SUFFIX, TMP_SUFFIX, Segment, encode_segment, read_segment, write_file_atomic
from monitoring.ingest.store.backend import Backend, open_backend
from monitoring.ingest.store.datacapture import export_records
from monitoring.ingest.store.schema import split_valid
from monitoring.ingest.store.writer import StoreWriter, drop_expired
import serving.common.procfs as procfs  # the module itself: the layer check sees "serving.common.procfs"

from monitoring.capture.sidecar_command import LOCK_NAME
from .metrics import SidecarMetrics
from .watching import SidecarWatch, start_watch_thread

log = logging.getLogger(__name__)

REJECTED_DIR = "_rejected"
#: a spool ``.tmp`` older than this (or whose writer pid is gone) is a crash leftover
STALE_TMP_S = 300.0
#: segments ingested per pass, so that a long backlog still lets a stop or a compaction in
MAX_SEGMENTS_PER_PASS = 200


class SidecarBusy(RuntimeError):
    """Another sidecar holds the spool lock."""


@dataclass
class StartupReport:
    store_tmp_files: list[str] = field(default_factory=list)
    store_tmp_bytes: int = 0
    spool_tmp_files: list[str] = field(default_factory=list)
    spool_tmp_bytes: int = 0
    compaction_leftovers: list[str] = field(default_factory=list)
    pending_segments: int = 0
    pending_bytes: int = 0


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a killed process its parent has not reaped yet is gone for our purposes
    return procfs.state(pid) != "Z"


class Sidecar:
    """Args:
        spool_dir: the spool root the Capturers write to.
        store: local directory or ``s3://bucket/prefix``.
        metrics_port: Prometheus port (None: no HTTP server; 0: any free port, see ``metrics_port``).
        compact_every: seconds between compaction passes (0 disables).
        s3_endpoint_url: S3-compatible endpoint (moto, MinIO) for the store and the Data Capture export.
        datacapture: also export SageMaker Data Capture JSON lines there (dir or s3://).
        poll_interval: seconds between spool scans when idle.
        retry_initial_s, retry_max_s: backoff bounds after a failed store write.
        drain_timeout: on stop, keep ingesting the spool at most this long.
        exit_with_pid: stop (and drain) once this process is gone: the tritonserver whose
            models started this sidecar (serving/runtime/host_services.py), so it never outlives it.
        retain_days: with a compaction pass (at most hourly), delete capture partitions older
            than this (None keeps everything; on S3, `deploy create --retain-days` sets a
            lifecycle rule instead).
    """

    def __init__(
        self,
        spool_dir: str | os.PathLike[str],
        store: str | os.PathLike[str] | Backend,
        *,
        metrics_port: int | None = None,
        metrics_addr: str = "127.0.0.1",
        compact_every: float = 300.0,
        s3_endpoint_url: str | None = None,
        datacapture: str | None = None,
        datacapture_endpoint: str = "local-endpoint",
        datacapture_variant: str = "AllTraffic",
        poll_interval: float = 0.2,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 30.0,
        drain_timeout: float = 30.0,
        metrics: SidecarMetrics | None = None,
        exit_with_pid: int | None = None,
        retain_days: float | None = None,
        watch: "SidecarWatch | None" = None,
        states_at_ingest: bool = True,
    ) -> None:
        self.spool_dir = os.path.abspath(os.fspath(spool_dir))
        self.backend = open_backend(store, s3_endpoint_url)
        self.writer = StoreWriter(self.backend)
        self.dc_backend = open_backend(datacapture, s3_endpoint_url) if datacapture else None
        self.dc_endpoint, self.dc_variant = datacapture_endpoint, datacapture_variant
        self.metrics = metrics or SidecarMetrics()
        self.metrics_port_requested = metrics_port
        self.metrics_addr = metrics_addr
        self.metrics_port: int | None = None
        self.compact_every = compact_every
        self.poll_interval = poll_interval
        self.retry_initial_s, self.retry_max_s = retry_initial_s, retry_max_s
        self.drain_timeout = drain_timeout
        self.stop_event = threading.Event()
        self.last_error: str | None = None
        self.consecutive_failures = 0
        self._retry_at = 0.0
        # Outage bookkeeping, for the recovery report: first failed write of the current outage,
        # and when writes came back while the backlog is still being caught up.
        self._failing_since: float | None = None
        self._recovered_at: float | None = None
        self._outage_s = 0.0
        self._next_compact = time.monotonic() + compact_every if compact_every > 0 else float("inf")
        self._producers: dict[str, dict[str, int]] = {}
        self._lock_fd: int | None = None
        self._http: Any = None
        self.startup: StartupReport | None = None
        self._recovered = False
        # per-hour drift states for the model's latest baseline, made after each compaction pass
        # (monitoring/analysis/fleet/states.py); off where the drift libraries are not installed
        self.states_at_ingest = states_at_ingest
        self._fits_cache: dict[Any, Any] = {}
        if states_at_ingest:
            # a compacted hour's states from the rows just merged (in memory), not a re-read
            self.writer.on_compacted = self._states_from_rows
        self.exit_with_pid = exit_with_pid
        self.retain_days = retain_days
        self._next_retention = 0.0
        # The watch loop (monitoring/ingest/sidecar/watching.py): scores closed windows once a baseline exists.
        self.watch = watch
        self._watch_stop = threading.Event()
        self._watch_thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> StartupReport:
        """Take the spool lock, clean up after a crash, start the metrics server."""
        private_dir(self.spool_dir)  # records of requests: this user's only (docs/security.md)
        self._take_lock()
        rep = StartupReport()
        rep.spool_tmp_files, rep.spool_tmp_bytes = self._remove_stale_spool_tmp()
        self._recover_store(rep)
        segs = self.pending_segments()
        rep.pending_segments, rep.pending_bytes = len(segs), sum(s for _, s in segs)
        if rep.store_tmp_files or rep.spool_tmp_files:
            log.warning(
                "unclean stop detected: removed %d unfinished temp files (%d bytes) from the store %s and %d "
                "(%d bytes) from the spool. Store temp files hold nothing that is lost (their segments are still "
                "in the spool); spool temp files are records a crashed model process never finished handing over: %s",
                len(rep.store_tmp_files), rep.store_tmp_bytes, self.backend.url(), len(rep.spool_tmp_files),
                rep.spool_tmp_bytes, rep.store_tmp_files + rep.spool_tmp_files,
            )
        if rep.pending_segments:
            log.info("resuming: %d segments (%d bytes) pending in spool %s", rep.pending_segments, rep.pending_bytes, self.spool_dir)
        self._set_backlog(segs)
        if self.metrics_port_requested is not None:
            from prometheus_client import start_http_server

            # Latest drift scores and accuracy per model, read from the store at each scrape.
            # The scores prefix keeps every past run: list it once a minute, not per scrape.
            export_scores(self.metrics.registry, self.backend, list_interval_s=60.0)

            self._http, _t = start_http_server(self.metrics_port_requested, addr=self.metrics_addr, registry=self.metrics.registry)
            self.metrics_port = self._http.server_address[1]
            log.info("metrics on http://%s:%d/metrics", self.metrics_addr, self.metrics_port)
        if self.watch is not None:
            self._watch_thread = start_watch_thread(self.backend, self.metrics.registry, self.watch, self._watch_stop)
        log.info("sidecar started: spool %s -> store %s%s", self.spool_dir, self.backend.url(), f", datacapture {self.dc_backend.url()}" if self.dc_backend else "")
        self.startup = rep
        return rep

    def _recover_store(self, rep: StartupReport | None = None) -> bool:
        """Store-side crash recovery; on failure (S3 down) it is retried before the next compaction."""
        try:
            rec = self.writer.recover()
        except Exception as e:
            self._recovered = False
            self._fail("recovery", e)
            return False
        self._recovered = True
        m = self.metrics
        m.unflushed_tmp_files.labels("store").inc(len(rec.tmp_files))
        m.unflushed_tmp_bytes.labels("store").inc(rec.tmp_bytes)
        if rep is not None:
            rep.store_tmp_files, rep.store_tmp_bytes, rep.compaction_leftovers = rec.tmp_files, rec.tmp_bytes, rec.compaction_leftovers
        elif rec.tmp_files:
            log.warning("removed %d unfinished temp files (%d bytes) from the store: %s", len(rec.tmp_files), rec.tmp_bytes, rec.tmp_files)
        if rec.compaction_leftovers:
            log.warning("finished an interrupted compaction: removed %d merged inputs: %s", len(rec.compaction_leftovers), rec.compaction_leftovers)
        return True

    def close(self) -> None:
        self._watch_stop.set()
        if self._watch_thread is not None:
            self._watch_thread.join(timeout=30)  # a pass in flight finishes (its ledger entry is written)
            self._watch_thread = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def stop(self) -> None:
        self.stop_event.set()

    def serve(self) -> int:
        """Run until :meth:`stop`; then drain the spool (bounded by ``drain_timeout``). Returns
        the number of segments left in the spool (0 after a clean drain)."""
        while not self.stop_event.is_set():
            if self.exit_with_pid and not _pid_alive(self.exit_with_pid):
                log.info("process %d (tritonserver) is gone: draining the spool and stopping", self.exit_with_pid)
                break
            n = self.run_once()
            if time.monotonic() >= self._next_compact:
                self.compact()
            if n == 0:
                self.stop_event.wait(self.poll_interval)
        return self.drain(self.drain_timeout)

    def drain(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = self.pending_segments()
            if not left:
                return 0
            self._retry_at = min(self._retry_at, deadline)
            if self.run_once(ignore_stop=True) == 0:
                wait = self._retry_at - time.monotonic()
                if wait > 0:
                    threading.Event().wait(min(wait, max(0.0, deadline - time.monotonic())))
        left = self.pending_segments()
        if left:
            log.warning("stopping with %d segments still in the spool (store failing: %s); they will be ingested on the next start", len(left), self.last_error)
        return len(left)

    # -- one pass -----------------------------------------------------------------------------
    def pending_segments(self) -> list[tuple[str, int]]:
        """Finished segments in the spool, oldest first: [(path, size)]."""
        out = []
        try:
            models = sorted(os.listdir(self.spool_dir))
        except FileNotFoundError:
            return []
        for m in models:
            d = os.path.join(self.spool_dir, m)
            if m.startswith((".", "_")) or not os.path.isdir(d):
                continue
            try:
                names = os.listdir(d)
            except FileNotFoundError:
                continue
            for n in names:
                if n.endswith(SEGMENT_SUFFIX) and not n.startswith("."):
                    p = os.path.join(d, n)
                    try:
                        out.append((p, os.path.getsize(p)))
                    except FileNotFoundError:
                        continue
        out.sort(key=lambda ps: os.path.basename(ps[0]))
        return out

    def run_once(self, ignore_stop: bool = False) -> int:
        """Ingest up to ``MAX_SEGMENTS_PER_PASS`` segments; returns how many were ingested."""
        if time.monotonic() < self._retry_at:
            return 0
        segs = self.pending_segments()
        self._set_backlog(segs)
        done = 0
        for path, _size in segs[:MAX_SEGMENTS_PER_PASS]:
            if self.stop_event.is_set() and not ignore_stop:
                break
            if not self._ingest(path):
                break
            done += 1
        if done:
            left = self.pending_segments()
            self._set_backlog(left)
            if not left and self._recovered_at is not None:
                self._report_caught_up()
        return done

    def _report_caught_up(self) -> None:
        caught_up_s = time.monotonic() - self._recovered_at
        self.metrics.last_outage_seconds.set(self._outage_s)
        self.metrics.last_catchup_seconds.set(caught_up_s)
        log.warning("spool backlog caught up %.1f s after the store came back (outage %.1f s)", caught_up_s, self._outage_s)
        self._recovered_at = None

    def _ingest(self, path: str) -> bool:
        m = self.metrics
        try:
            seg = read_segment(path)
        except FileNotFoundError:
            return True
        except OSError as e:
            self._fail("spool", e)
            return False
        model_dir = os.path.basename(os.path.dirname(path))
        self._producer_report(seg, model_dir)
        records = seg.records
        ok_model = [isinstance(r.get("model"), str) and MODEL_NAME_RE.match(r["model"]) is not None for r in records]
        bad = [(r, f"invalid model name {r.get('model')!r}") for r, ok in zip(records, ok_model) if not ok]
        candidates = [r for r, ok in zip(records, ok_model) if ok] if bad else records
        table, bad_schema = split_valid(candidates)
        bad += bad_schema
        bad_ids = {id(r) for r, _ in bad}
        good = [r for r in candidates if id(r) not in bad_ids] if bad_schema else candidates
        by_model: dict[str, int] = {}
        for r in good:
            by_model[r["model"]] = by_model.get(r["model"], 0) + 1
        t0 = time.perf_counter()
        try:
            parts = self.writer.write_parts(table, seg.stem) if table.num_rows else []
        except Exception as e:
            self._fail("store", e)
            return False
        m.write_seconds.observe(time.perf_counter() - t0)
        if self.dc_backend is not None and good:
            try:
                export_records(self.dc_backend, good, seg.stem, self.dc_endpoint, self.dc_variant)
            except Exception as e:
                self._fail("datacapture", e)
                return False
        if bad or seg.bad_lines:
            self._keep_rejected(seg, bad, model_dir)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            self._fail("spool", e)
            return False
        m.received.labels(model_dir).inc(len(records) + seg.bad_lines)
        m.bytes_received.labels(model_dir).inc(seg.size)
        for p in parts:
            model = parse_model(p.key)
            m.bytes_written.labels(model).inc(p.bytes)
        for model, n in by_model.items():
            m.written.labels(model).inc(n)
        m.segments_ingested.inc()
        if self.consecutive_failures:
            now = time.monotonic()
            self._outage_s = now - (self._failing_since if self._failing_since is not None else now)
            self._recovered_at, self._failing_since = now, None
            self.metrics.outages.inc()
            log.warning("store writes recovered after %d failures, %.1f s after the first one", self.consecutive_failures,
                        self._outage_s)
        self.consecutive_failures = 0
        self._retry_at = 0.0
        m.store_up.set(1)
        return True

    def _fail(self, target: str, e: BaseException) -> None:
        if not self.consecutive_failures:
            self._failing_since = time.monotonic()
        self.consecutive_failures += 1
        self.last_error = f"{target}: {type(e).__name__}: {e}"
        self.metrics.write_errors.labels(target).inc()
        self.metrics.store_up.set(0)
        delay = min(self.retry_max_s, self.retry_initial_s * (2 ** min(self.consecutive_failures - 1, 20)))
        self._retry_at = time.monotonic() + delay
        level = logging.ERROR if self.consecutive_failures in (1, 2) or self.consecutive_failures % 20 == 0 else logging.DEBUG
        log.log(level, "write failed (%d in a row), segments stay in the spool, retrying in %.1fs: %s", self.consecutive_failures, delay, self.last_error)

    def _keep_rejected(self, seg: Segment, bad: list[tuple[dict[str, Any], str]], model_dir: str) -> None:
        m = self.metrics
        n = len(bad) + seg.bad_lines
        m.rejected.labels(model_dir).inc(n)
        log.warning("segment %s: %d records rejected (%d unparseable lines); first reason: %s", seg.name, n, seg.bad_lines, bad[0][1] if bad else "bad JSON")
        if not bad:
            return
        try:
            d = os.path.join(self.spool_dir, REJECTED_DIR, model_dir)
            os.makedirs(d, exist_ok=True)
            recs = []
            for r, why in bad:
                r = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in r.items()}
                r["_reject_reason"] = why
                recs.append(r)
            write_file_atomic(os.path.join(d, seg.name), encode_segment(seg.header, recs))
        except OSError as e:
            log.error("cannot keep rejected records of %s: %s", seg.name, e)

    def _producer_report(self, seg: Segment, model_dir: str) -> None:
        h = seg.header
        prod, counters = h.get("producer"), h.get("counters")
        if not isinstance(prod, str) or not isinstance(counters, dict):
            return
        model = h.get("model") if isinstance(h.get("model"), str) else model_dir
        last = self._producers.setdefault(prod, {})
        m = self.metrics
        for name, metric in (("dropped", m.dropped), ("sampled_out", m.sampled_out), ("unknown_fields", m.unknown_fields), ("write_errors", m.producer_write_errors)):
            v = counters.get(name)
            if isinstance(v, int) and v > last.get(name, 0):
                metric.labels(model).inc(v - last.get(name, 0))
                last[name] = v
        if isinstance(h.get("queue_depth"), int):
            m.queue_depth.labels(model).set(h["queue_depth"])

    def _set_backlog(self, segs: list[tuple[str, int]]) -> None:
        self.metrics.spool_segments.set(len(segs))
        self.metrics.spool_bytes.set(sum(s for _, s in segs))

    # -- housekeeping -------------------------------------------------------------------------
    def compact(self) -> None:
        self._next_compact = time.monotonic() + self.compact_every if self.compact_every > 0 else float("inf")
        if not self._recovered and not self._recover_store():
            return
        try:
            rep = self.writer.compact_pending()  # only partitions written since the last pass
        except Exception as e:
            self._fail("compaction", e)
            return
        if rep.partitions:
            self.metrics.compactions.inc(rep.partitions)
            self.metrics.compaction_files_removed.inc(rep.files_before - rep.files_after)
            log.info("compacted %d partitions: %d files -> %d, %d rows (%d duplicates removed)", rep.partitions, rep.files_before, rep.files_after, rep.rows, rep.duplicates_removed)
        if self.retain_days and time.monotonic() >= self._next_retention:
            self._next_retention = time.monotonic() + 3600  # one full listing an hour, not per pass
            try:
                dropped = drop_expired(self.backend, self.retain_days)
            except Exception as e:  # retried next hour; ingest must not stop for it
                log.warning("retention pass failed: %s: %s", type(e).__name__, e)
                dropped = None
            if dropped is not None and dropped.files:
                log.info("retention (%g days): dropped %d partitions, %d files", self.retain_days, dropped.partitions, dropped.files)
        if self.states_at_ingest and rep.dirs:
            self._write_states(rep.dirs)
        self._remove_stale_spool_tmp()

    def _write_states(self, dirs: list[str]) -> None:
        try:
            from monitoring.analysis.fleet.states import write_partition_states
        except ImportError as e:  # the model execution env ships without the drift libraries
            log.info("no drift states at ingest (%s)", e)
            self.states_at_ingest = False
            return
        try:
            n = write_partition_states(self.backend, dirs, fits_cache=self._fits_cache)
        except Exception as e:  # a state is an optimisation: scoring makes it from the rows if missing
            log.warning("drift states at ingest failed: %s", e)
            return
        if n:
            log.info("wrote %d drift states", n)

    def _states_from_rows(self, partition: str, key: str, table: Any, nbytes: int, whole: bool) -> None:
        if not (self.states_at_ingest and whole):
            return  # other files in the hour: the pass after compaction reads it (write_partition_states)
        try:
            from monitoring.analysis.fleet.states import states_from_rows
        except ImportError:
            return  # no drift libraries: _write_states turns states off
        n = states_from_rows(self.backend, partition, key, nbytes, table, fits_cache=self._fits_cache)
        if n:
            log.info("wrote %d drift states of %s from its compacted rows", n, partition)

    def _remove_stale_spool_tmp(self) -> tuple[list[str], int]:
        removed, nbytes = [], 0
        now = time.time()
        for root, _dirs, files in os.walk(self.spool_dir):
            for n in files:
                if not n.endswith(TMP_SUFFIX):
                    continue
                p = os.path.join(root, n)
                parts = n.split("-")
                try:
                    pid = int(parts[1]) if len(parts) >= 4 else -1
                    st = os.stat(p)
                except (ValueError, OSError):
                    continue
                if _pid_alive(pid) and now - st.st_mtime < STALE_TMP_S:
                    continue  # a live model process is writing it right now
                try:
                    os.unlink(p)
                except OSError:
                    continue
                removed.append(os.path.relpath(p, self.spool_dir))
                nbytes += st.st_size
        if removed:
            self.metrics.unflushed_tmp_files.labels("spool").inc(len(removed))
            self.metrics.unflushed_tmp_bytes.labels("spool").inc(nbytes)
        return removed, nbytes

    def _take_lock(self) -> None:
        path = os.path.join(self.spool_dir, LOCK_NAME)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise SidecarBusy(f"another sidecar (pid {other or '?'}) already serves spool {self.spool_dir}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd


def parse_model(key: str) -> str:
    first = key.split("/", 1)[0]
    return first.partition("=")[2] if first.startswith("model=") else "?"
