"""In-model capture: hand records to a bounded queue, write spool segments off the request path.

Usage inside a model (Triton Python backend ``initialize`` / ``execute`` / ``finalize``)::

    self.capture = Capturer.from_env(args["model_name"], args["model_version"])
    ...
    self.capture.submit({"request_id": rid, "ts_ms": t0_ms, "outcome": "ok", ...})
    ...
    self.capture.close(timeout=30)       # in finalize(): flushes everything

``submit`` never blocks and never does I/O: it samples, then ``put_nowait``s into a bounded
queue; when the queue is full the record is dropped and counted. A served model hands whole
requests instead (``submit_request``): sampling is decided per request id before anything is
built, and the queue holds the request (references to what it computed), so its rows are kept,
sampled out or dropped together. One daemon thread per Capturer is the only worker: it turns
queued requests into records (:class:`.record.RequestCapture`), batches records into segment
files (see :mod:`.segments`) and renames them into ``<spool>/<model>/``, where the sidecar
picks them up. One queue, one thread, one ``dropped`` counter between a request and the spool.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import queue
import random
import threading
import time
import uuid
import weakref
from typing import Any

from .fields import SCHEMA_VERSION, check_model_name
from .private import private_dir
from .segments import SEGMENT_FORMAT, SEGMENT_SUFFIX, encode_line, encode_lines, normalize_record, write_file_atomic

log = logging.getLogger(__name__)

# Entries: a record from `submit`, or a served request (however many rows) from `submit_request`.
DEFAULT_QUEUE_SIZE = 10_000
# A queued request holds references to its images and embeddings until its segment is written
# (records are built then), so requests have a tighter bound of their own: while the spool is
# unwritable, 1024 classifier requests hold ~200 MB; 10,000 SD requests would hold ~15 GB.
DEFAULT_MAX_QUEUED_REQUESTS = 1024
DEFAULT_BATCH_SIZE = 500
# Larger, fewer segments: on small hosts the sidecar's per-file Parquet cost, not the records, is
# what competes with inference (bench/capture_bench.py: p50 ratio 1.046 at 0.5 s, 0.976 at 2 s).
# Every model runs two instances, each writing its own segments, so 5 s: the sidecar spends
# 4.8 ms a segment plus 0.118 ms a record (bench/results/capture-profile-2026-12-04.md), i.e.
# 0.44 ms a record in the ~15-record segments 2 s gave at ~15 req/s, 0.25 ms at 5 s.
DEFAULT_FLUSH_INTERVAL_S = 5.0
# The spool never grows past this unless configured otherwise: with nothing draining it (no
# sidecar, store down for days) capture drops and counts records instead of filling the disk
# the models run on. 1 GiB holds ~250k ResNet records (2048-d embeddings) or days of SD traffic.
DEFAULT_SPOOL_MAX_MB = 1024.0
_STOP = object()


class SpoolFull(OSError):
    """The spool is at its size bound: the segment is dropped (counted), not retried."""


def spool_usage(spool_dir: str) -> int:
    """Bytes in regular files under the spool (segments, temp files, rejected records)."""
    total = 0
    stack = [spool_dir]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:  # removed by the sidecar while we look
                        continue
        except OSError:
            continue
    return total


def _env_model_key(model_name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in model_name).upper()


def _parse_rate(value: str | float, what: str) -> float:
    try:
        rate = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: sample rate must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"{what}: sample rate must be in [0, 1], got {rate}")
    return rate


def sampled_by_id(request_id: str, rate: float) -> bool:
    """Deterministic sampling: the same request id is always in or out for a given rate."""
    h = hashlib.blake2b(request_id.encode("utf-8", "replace"), digest_size=8).digest()
    return int.from_bytes(h, "big") < rate * 18446744073709551616.0  # 2**64


class NullCapturer:
    """Capture disabled: same API as :class:`Capturer`, does nothing, costs nothing."""

    enabled = False

    def __init__(self, model_name: str = "", model_version: str = "") -> None:
        self.model_name, self.model_version = model_name, model_version
        self.sample_rate = 0.0
        self.submitted = self.sampled_out = self.dropped = self.written = 0
        self.write_errors = self.unknown_fields = self.lost_on_close = self.segments_written = 0
        self.spool_full = 0
        self.last_error: str | None = None

    def submit(self, record: dict[str, Any]) -> bool:
        return False

    def should_sample(self, request_id: str | None = None) -> bool:
        return False

    def submit_request(self, request_id: str, records: int, build: Any) -> bool:
        return False

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def close(self, timeout: float | None = 30.0) -> bool:
        return True

    def queue_depth(self) -> int:
        return 0

    def counters(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in _COUNTERS}


_COUNTERS = ("submitted", "sampled_out", "dropped", "written", "segments_written", "write_errors", "unknown_fields", "lost_on_close", "spool_full")


class Capturer:
    """Non-blocking request capture for one model in one process.

    Args:
        spool_dir: root spool directory shared with the sidecar; segments go to ``<spool_dir>/<model_name>/``.
        model_name, model_version: filled into records that lack ``model`` / ``model_version``.
        sample_rate: fraction of requests kept, 0..1 (SageMaker's InitialSamplingPercentage / 100).
        queue_size: bound of the in-memory queue, in entries (a request from ``submit_request``
            or a record from ``submit``); a full queue drops (and counts) them.
        max_queued_requests: at most this many of those entries are requests (each holds its
            images until its segment is written); past it a request is dropped and counted.
        batch_size: max records per segment.
        flush_interval_s: max time a record waits in the writer before its segment is written.
        deterministic: sample by a hash of ``request_id`` (True) or at random (False).
        seed: seeds the random sampling of ``deterministic=False`` (None: unseeded).
        min_free_bytes: refuse to write segments while the spool filesystem has less free
            space than this (counted as a write error and retried), like Data Capture stopping
            at high disk usage. 0 disables the check.
        max_spool_bytes: bound on the whole spool (all models of the host); a segment that would
            pass it is dropped and its records counted in ``dropped`` and ``spool_full``. 0: no bound.
        retry_max_s: ceiling of the exponential backoff between failed segment writes.

    Counters (plain int attributes, read them any time), all in records: ``submitted``
    (records handed over, sampled or not), ``sampled_out``, ``dropped`` (queue full, capturer
    closed, a request whose records could not be built, spool full: the one drop counter),
    ``written`` (records in
    segments on disk), ``segments_written``, ``write_errors`` (failed segment writes; each is
    retried), ``unknown_fields`` (keys outside the contract, dropped from the record),
    ``lost_on_close`` (records still unwritten when ``close`` timed out). ``last_error`` holds
    the text of the latest write error.
    """

    enabled = True

    def __init__(
        self,
        spool_dir: str | os.PathLike[str],
        model_name: str,
        model_version: str = "1",
        *,
        sample_rate: float = 1.0,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        batch_size: int = DEFAULT_BATCH_SIZE,
        flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
        deterministic: bool = True,
        seed: int | None = None,
        max_queued_requests: int = DEFAULT_MAX_QUEUED_REQUESTS,
        min_free_bytes: int = 0,
        max_spool_bytes: int = int(DEFAULT_SPOOL_MAX_MB * 1024 * 1024),
        retry_max_s: float = 5.0,
    ) -> None:
        self.model_name = check_model_name(model_name)
        self.model_version = str(model_version)
        self.sample_rate = _parse_rate(sample_rate, model_name)
        if queue_size < 1 or batch_size < 1 or flush_interval_s <= 0:
            raise ValueError("queue_size and batch_size must be >= 1 and flush_interval_s > 0")
        self.spool_dir = os.fspath(spool_dir)
        self.dir = os.path.join(self.spool_dir, model_name)
        try:
            private_dir(self.spool_dir)
            private_dir(self.dir)
        except OSError as e:  # the writer retries (and counts) it; loading the model must not fail
            log.warning("capture %s: cannot create spool dir %s yet: %s", model_name, self.dir, e)
        self.batch_size = int(batch_size)
        self.flush_interval_s = float(flush_interval_s)
        self.deterministic = deterministic
        self._random = random.Random(seed)
        self.max_queued_requests = int(max_queued_requests)
        self._queued_requests = 0  # request entries in the queue (under self._lock)
        self.min_free_bytes = int(min_free_bytes)
        self.max_spool_bytes = int(max_spool_bytes)
        self.retry_max_s = float(retry_max_s)

        self.submitted = self.sampled_out = self.dropped = self.written = 0
        self.segments_written = self.write_errors = self.unknown_fields = self.lost_on_close = 0
        self.spool_full = 0
        self.last_error: str | None = None
        self._full_since: float | None = None  # when the current spool-full streak began (writer thread only)
        self._full_dropped_before = 0
        self._unknown_names: set[str] = set()

        self._q: queue.Queue[Any] = queue.Queue(maxsize=int(queue_size))
        self._lock = threading.Lock()  # counters touched from request threads
        self._closed = False
        self._close_deadline = float("inf")
        self._flush_requests: list[threading.Event] = []
        self._pid = os.getpid()
        self._token = uuid.uuid4().hex[:8]
        self._seq = 0
        self._thread = threading.Thread(target=self._run, name=f"capture-{model_name}", daemon=True)
        self._thread.start()
        ref = weakref.ref(self)
        atexit.register(lambda: (c := ref()) is not None and c.close(timeout=5.0))

    # -- construction from the environment -------------------------------------------------
    @classmethod
    def from_env(cls, model_name: str, model_version: str = "1", environ: dict[str, str] | None = None, **kwargs: Any) -> "Capturer | NullCapturer":
        """Build from ``CAPTURE_*`` environment variables; a :class:`NullCapturer` if disabled.

        ``CAPTURE_SPOOL_DIR`` (unset or empty: capture disabled), ``CAPTURE_SAMPLE_RATE``
        (default 1.0), ``CAPTURE_SAMPLE_RATE_<MODEL>`` (model name upper-cased, non
        alphanumerics as ``_``; overrides the global rate), ``CAPTURE_QUEUE_SIZE`` (default
        10000 entries: requests or records), ``CAPTURE_BATCH_SIZE``, ``CAPTURE_FLUSH_INTERVAL_S``, ``CAPTURE_MIN_FREE_MB``,
        ``CAPTURE_SPOOL_MAX_MB`` (default 1024; 0 = unbounded).
        A rate of 0 also yields a NullCapturer. Bad values raise ValueError here, at model
        load, never on the request path.
        """
        env = os.environ if environ is None else environ
        spool = env.get("CAPTURE_SPOOL_DIR", "").strip()
        if not spool:
            return NullCapturer(model_name, model_version)
        key = "CAPTURE_SAMPLE_RATE_" + _env_model_key(model_name)
        raw_rate = env.get(key) or env.get("CAPTURE_SAMPLE_RATE") or "1.0"
        rate = _parse_rate(raw_rate, key if env.get(key) else "CAPTURE_SAMPLE_RATE")
        if rate == 0.0:
            return NullCapturer(model_name, model_version)
        opts: dict[str, Any] = {"sample_rate": rate}
        for var, name, conv in (
            ("CAPTURE_QUEUE_SIZE", "queue_size", int),
            ("CAPTURE_BATCH_SIZE", "batch_size", int),
            ("CAPTURE_FLUSH_INTERVAL_S", "flush_interval_s", float),
            ("CAPTURE_MIN_FREE_MB", "min_free_bytes", lambda s: int(float(s) * 1024 * 1024)),
            ("CAPTURE_SPOOL_MAX_MB", "max_spool_bytes", lambda s: int(float(s) * 1024 * 1024)),
        ):
            if env.get(var, "").strip():
                try:
                    opts[name] = conv(env[var])
                except ValueError:
                    raise ValueError(f"{var}: not a number: {env[var]!r}") from None
        opts.update(kwargs)
        return cls(spool, model_name, model_version, **opts)

    # -- request path ----------------------------------------------------------------------
    def should_sample(self, request_id: str | None = None) -> bool:
        """Whether a request would be kept; lets a model skip computing features it won't send."""
        rate = self.sample_rate
        if rate >= 1.0:
            return True
        if rate <= 0.0:
            return False
        if self.deterministic and request_id:
            return sampled_by_id(str(request_id), rate)
        return self._random.random() < rate

    def submit_request(self, request_id: str, records: int, build: Any) -> bool:
        """Queue one served request that makes ``records`` records; returns True if queued.

        Sampling is decided here, on the request id, before anything is built: ``build()``
        (which returns an object with a ``records()`` method, e.g.
        :class:`.record.RequestCapture`) is only called for a request that is kept, and the
        records themselves are made on the worker thread. A full queue drops the whole request,
        counted once (as its ``records``) in ``dropped``. Never blocks, never raises.
        """
        try:
            with self._lock:
                self.submitted += records
            if self._closed:
                with self._lock:
                    self.dropped += records
                return False
            if self.sample_rate < 1.0 and not self.should_sample(request_id):
                with self._lock:
                    self.sampled_out += records
                return False
            with self._lock:
                if self._queued_requests >= self.max_queued_requests:
                    raise queue.Full
                self._queued_requests += 1
            try:
                self._q.put_nowait(build())
            except BaseException:
                with self._lock:
                    self._queued_requests -= 1
                raise
            return True
        except Exception:  # queue.Full, or a failing build: a request must never fail for capture
            with self._lock:
                self.dropped += records
            return False

    def submit(self, record: dict[str, Any]) -> bool:
        """Queue one record; returns True if queued. Never blocks, never raises, never does I/O.

        The record dict (and any array in it) is handed over: do not mutate it afterwards.
        """
        try:
            with self._lock:
                self.submitted += 1
            if self._closed:
                with self._lock:
                    self.dropped += 1
                return False
            if self.sample_rate < 1.0 and not self.should_sample(record.get("request_id")):
                with self._lock:
                    self.sampled_out += 1
                return False
            if "ts_ms" not in record:
                record["ts_ms"] = int(time.time() * 1000)
            self._q.put_nowait(record)
            return True
        except queue.Full:
            with self._lock:
                self.dropped += 1
            return False
        except Exception:  # a bad record must never break inference
            with self._lock:
                self.dropped += 1
            return False

    def queue_depth(self) -> int:
        return self._q.qsize()

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {k: getattr(self, k) for k in _COUNTERS}

    # -- lifecycle -------------------------------------------------------------------------
    def flush(self, timeout: float | None = 30.0) -> bool:
        """Block until everything submitted so far is in a segment on disk (or timeout).

        For tests and shutdown paths, not for the request path.
        """
        if self._closed or not self._thread.is_alive():
            return self._q.empty()
        ev = threading.Event()
        try:
            self._q.put(ev, timeout=timeout)
        except queue.Full:
            return False
        return ev.wait(timeout)

    def close(self, timeout: float | None = 30.0) -> bool:
        """Stop accepting records, write everything queued, stop the thread.

        Returns True when every accepted record reached the spool. If writes keep failing
        past ``timeout`` the remainder is counted in ``lost_on_close`` and logged.
        """
        if self._closed:
            self._thread.join(timeout)
            return self.lost_on_close == 0 and not self._thread.is_alive()
        self._closed = True
        self._close_deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        try:
            self._q.put(_STOP, timeout=timeout)
        except queue.Full:
            pass  # the writer is stuck retrying; it will give up at the deadline
        self._thread.join(None if timeout is None else max(0.0, self._close_deadline - time.monotonic()) + 1.0)
        return self.lost_on_close == 0 and not self._thread.is_alive()

    # -- writer thread ---------------------------------------------------------------------
    def _run(self) -> None:
        from .priority import lower_current_thread_priority

        lower_current_thread_priority()
        waiters: list[threading.Event] = []
        stop = False
        while not stop:
            # Idle: block for the first entry; once closed, poll so a _STOP that close() could
            # not enqueue is not needed.
            try:
                item = self._q.get(timeout=0.1 if self._closed else None)
            except queue.Empty:
                stop = self._closed
                continue
            # A segment opens with its first entry and is written at its deadline, when full, or
            # on flush()/close(). Each request's records are built as it arrives, one request at a
            # time: this thread shares the GIL with the request threads, and building a whole
            # segment's records at its deadline held it for ~15 ms in one go, during which the
            # forward pass waited up to Python's 5 ms switch interval at every op boundary
            # (bench/results/capture-resnet50-2026-12-04-b.md: the p99 at concurrency 1).
            batch: list[str] = []  # the segment's record lines, encoded as their requests arrive
            deadline = time.monotonic() + self.flush_interval_s
            while True:
                entries: list[Any] = []
                stop = self._take(item, entries, waiters)
                for entry in entries:
                    batch.extend(self._lines(self._records(entry)))
                if stop or waiters or len(batch) >= self.batch_size:
                    break
                remaining = 0.0 if self._closed else deadline - time.monotonic()
                try:
                    item = self._q.get(timeout=remaining) if remaining > 0 else self._q.get_nowait()
                except queue.Empty:
                    break
            for start in range(0, len(batch), self.batch_size):
                if not self._write_with_retry(batch[start:start + self.batch_size]):
                    with self._lock:  # gave up at the close deadline: the rest of this batch too
                        self.lost_on_close += max(0, len(batch) - start - self.batch_size)
                    stop = True
                    break
            for ev in waiters:
                ev.set()
            waiters = []
        for ev in waiters:
            ev.set()
        if self.lost_on_close:
            # count what is still queued as lost too
            n = 0
            while True:
                try:
                    item = self._q.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, dict):
                    n += 1
                elif not isinstance(item, threading.Event) and item is not _STOP:
                    n += len(item)
                elif isinstance(item, threading.Event):
                    item.set()
            with self._lock:
                self.lost_on_close += n
            log.error("capture %s: %d records not written at close (last error: %s)", self.model_name, self.lost_on_close, self.last_error)

    @staticmethod
    def _take(item: Any, entries: list[Any], waiters: list[threading.Event]) -> bool:
        """Sort one queue item; True for the stop marker."""
        if item is _STOP:
            return True
        if isinstance(item, threading.Event):
            waiters.append(item)
        else:
            entries.append(item)
        return False

    @staticmethod
    def _size(entry: Any) -> int:
        return 1 if isinstance(entry, dict) else len(entry)

    def _records(self, item: Any) -> list[dict[str, Any]]:
        """The records of one queue entry: a record as submitted, or a request's, built here."""
        if isinstance(item, dict):
            return [item]
        with self._lock:
            self._queued_requests -= 1
        try:
            return item.records()
        except Exception:  # monitoring must never take the model down: count the request, go on
            with self._lock:
                self.dropped += len(item)
            log.exception("capture %s: building a request's records failed", self.model_name)
            return []

    def _write_with_retry(self, batch: list[str]) -> bool:
        """Write one segment of encoded record lines (`_line`), retrying failed writes."""
        backoff = 0.05
        data: bytes | None = None
        while True:
            try:
                if data is None:
                    data = self._segment(batch)
                self._write_segment(data)
                with self._lock:
                    self.written += len(batch)
                    self.segments_written += 1
                if self._full_since is not None:
                    # The recovery report of the spool-full fault (docs/reliability.md).
                    # Per process: each instance of a model has its own Capturer and reports its
                    # own drops; the pid tells the reports of two instances apart.
                    log.warning("capture %s (pid %d): spool has room again, capture resumed %.1f s after it "
                                "filled (%d records dropped meanwhile, %d in all)", self.model_name, os.getpid(),
                                time.monotonic() - self._full_since, self.spool_full - self._full_dropped_before,
                                self.spool_full)
                    self._full_since = None
                return True
            except SpoolFull as e:
                # Retrying would only stall the writer until the queue drops instead: drop now.
                if self._full_since is None:
                    self._full_since, self._full_dropped_before = time.monotonic(), self.spool_full
                with self._lock:
                    self.dropped += len(batch)
                    self.spool_full += len(batch)
                    first = self.spool_full == len(batch)
                    self.last_error = str(e)
                if first or self.spool_full // 1000 > (self.spool_full - len(batch)) // 1000:
                    log.warning("capture %s (pid %d): %s; %d records dropped so far (is the sidecar running?)",
                                self.model_name, os.getpid(), e, self.spool_full)
                return True
            except Exception as e:  # disk full, permissions, ...: retry, never raise
                with self._lock:
                    self.write_errors += 1
                    self.last_error = f"{type(e).__name__}: {e}"
                if self.write_errors == 1 or self.write_errors % 100 == 0:
                    log.warning("capture %s: segment write failed (%d so far), retrying: %s", self.model_name, self.write_errors, self.last_error)
                if self._closed and time.monotonic() >= self._close_deadline:
                    with self._lock:
                        self.lost_on_close += len(batch)
                    return False
                wait = backoff
                if self._closed:
                    wait = min(wait, max(0.0, self._close_deadline - time.monotonic()))
                time.sleep(wait)
                backoff = min(backoff * 2, self.retry_max_s)

    def _lines(self, records: list[dict[str, Any]]) -> list[str]:
        """The segment lines of these records; one that cannot be encoded (a value outside its
        field's kind) is dropped and counted, and the worker goes on."""
        lines = []
        for rec in records:
            try:
                lines.append(self._line(rec))
            except Exception as exc:  # monitoring must never stop capturing over one bad record
                with self._lock:
                    self.dropped += 1
                log.warning("capture %s: dropped a record that cannot be encoded: %s: %s", self.model_name,
                            type(exc).__name__, exc)
        return lines

    def _line(self, rec: dict[str, Any]) -> str:
        """One record as its segment line: normalised to the contract (unknown fields dropped and
        counted) and JSON-encoded, on arrival, so a segment's write is a join, not ~0.1 ms a record."""
        clean, extra = normalize_record(rec)
        if extra:
            new = set(extra) - self._unknown_names
            if new:
                self._unknown_names |= new
                log.warning("capture %s: dropping fields outside the record contract: %s", self.model_name, sorted(new))
            with self._lock:
                self.unknown_fields += len(extra)
        clean["schema_version"] = SCHEMA_VERSION
        clean.setdefault("model", self.model_name)
        clean.setdefault("model_version", self.model_version)
        clean.setdefault("outcome", "ok")
        return encode_line(clean)

    def _segment(self, lines: list[str]) -> bytes:
        """A segment of record lines, with a header carrying this capturer's counters."""
        with self._lock:
            counters = {k: getattr(self, k) for k in _COUNTERS}
        header = {
            "format": SEGMENT_FORMAT,
            "producer": f"{self._pid}-{self._token}",
            "model": self.model_name,
            "model_version": self.model_version,
            "created_ms": int(time.time() * 1000),
            "records": len(lines),
            "queue_depth": self._q.qsize(),
            "sample_rate": self.sample_rate,
            "counters": counters,
        }
        return encode_lines(header, lines)

    def _encode(self, batch: list[dict[str, Any]]) -> bytes:
        """A segment of these records (the worker encodes them one by one instead)."""
        return self._segment([self._line(rec) for rec in batch])

    def _write_segment(self, data: bytes) -> None:
        if self.min_free_bytes:
            st = os.statvfs(self.dir)
            free = st.f_bavail * st.f_frsize
            if free - len(data) < self.min_free_bytes:
                raise OSError(28, f"spool free space {free} B below CAPTURE_MIN_FREE_MB threshold", self.dir)
        if self.max_spool_bytes:
            used = spool_usage(self.spool_dir)
            if used + len(data) > self.max_spool_bytes:
                raise SpoolFull(f"spool {self.spool_dir} holds {used} B; a {len(data)} B segment would pass "
                                f"CAPTURE_SPOOL_MAX_MB={self.max_spool_bytes / 2**20:g}")
        private_dir(self.dir)  # the spool may have been cleaned under us; never someone else's (0700)
        name = f"{int(time.time() * 1000):013d}-{self._pid}-{self._token}-{self._seq:08d}{SEGMENT_SUFFIX}"
        write_file_atomic(os.path.join(self.dir, name), data)
        self._seq += 1
