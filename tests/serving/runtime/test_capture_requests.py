"""One way from request to spool: a served request is sampled, queued, dropped and written whole.

The real classifier runtime answers multi-row requests; the real Capturer writes real spool
segments. Every request here has ROWS rows, so its records are `<id>:0` .. `<id>:ROWS-1`.
"""

from __future__ import annotations

import collections
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import monitoring.capture.record as record_module
from monitoring.capture import Capturer
from monitoring.capture.segments import SEGMENT_SUFFIX, read_segment
from serving.runtime.capture_hook import CaptureHook
from serving.runtime.device import DeviceSpec
from serving.runtime.models import runtime_class
from serving.runtime.models.base import RawRequest
from serving.runtime.triton_adapter import CaptureMetrics
from tests.conftest import png, tensor

ROWS = 3


@pytest.fixture(scope="module")
def answered(checkpoint):
    """The classifier runtime and its results for 4 requests of ROWS images each."""
    rt = runtime_class("resnet_classifier")(checkpoint("resnet_classifier"), DeviceSpec.for_instance("CPU"),
                                            max_pipeline_batch=ROWS)
    rt.load()
    rt.capture_embeddings = True
    results = rt.handle([RawRequest({"image": tensor(*(png(40, seed=4 * r + i) for i in range(ROWS)))})
                         for r in range(4)])
    assert all(r.error is None and len(r.items) == ROWS for r in results)
    return rt, results


def serve(hook: CaptureHook, results, n_requests: int, prefix: str = "req") -> list[str]:
    """Hand `n_requests` answered requests to the hook, a Triton batch of len(results) at a time."""
    ids = [f"{prefix}{i}" for i in range(n_requests)]
    for start in range(0, n_requests, len(results)):
        chunk = ids[start:start + len(results)]
        hook.observe(chunk, results[:len(chunk)], arrival_ms=1_700_000_000_000)
    return ids


def spooled(cap: Capturer) -> dict[str, list[str]]:
    """request id -> the record ids written for it, from the segment files on disk."""
    assert cap.flush(timeout=60)
    by_request: dict[str, list[str]] = collections.defaultdict(list)
    for path in sorted(Path(cap.dir).glob(f"*{SEGMENT_SUFFIX}")):
        for rec in read_segment(str(path)).records:
            by_request[rec["request_id"].rsplit(":", 1)[0]].append(rec["request_id"])
    return by_request


def wait_for(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_sampling_keeps_or_drops_all_rows_of_a_request(answered, tmp_path):
    rt, results = answered
    cap = Capturer(tmp_path, "resnet_classifier", sample_rate=0.5, deterministic=False, seed=11,
                   batch_size=16, flush_interval_s=0.05)
    hook = CaptureHook(rt, "1", cap)
    try:
        ids = serve(hook, results, 40)
        written = spooled(cap)
    finally:
        assert cap.close(timeout=30)
    kept = [rid for rid in ids if rid in written]
    assert 0 < len(kept) < len(ids)  # the seeded rate kept some requests and sampled some out
    for rid in kept:  # a kept request: every row, each once
        assert sorted(written[rid]) == [f"{rid}:{row}" for row in range(ROWS)]
    assert set(written) == set(kept)  # no partial request under some other id
    c = cap.counters()
    assert c["submitted"] == ROWS * len(ids)
    assert c["sampled_out"] == ROWS * (len(ids) - len(kept))
    assert c["written"] == ROWS * len(kept) and c["dropped"] == 0


def test_same_seed_samples_the_same_requests(answered, tmp_path):
    rt, results = answered
    kept = []
    for run in range(2):
        cap = Capturer(tmp_path / str(run), "resnet_classifier", sample_rate=0.3, deterministic=False, seed=5,
                       batch_size=64, flush_interval_s=0.05)
        serve(CaptureHook(rt, "1", cap), results, 24)
        kept.append(set(spooled(cap)))
        assert cap.close(timeout=30)
    assert kept[0] == kept[1] and kept[0]


@pytest.mark.parametrize("bound", [{"queue_size": 2}, {"max_queued_requests": 2}], ids=["entries", "requests"])
def test_a_full_queue_drops_whole_requests_counted_once_on_the_one_counter(answered, tmp_path, bound):
    rt, results = answered
    # The writer cannot write (free-space guard unreachable) and retries: the worker holds the
    # first request's records in its batch, so the queue (2 entries, or 2 requests) fills behind it.
    cap = Capturer(tmp_path, "resnet_classifier", batch_size=ROWS, flush_interval_s=0.01,
                   min_free_bytes=10**18, retry_max_s=0.05, **bound)
    hook = CaptureHook(rt, "1", cap)
    metrics = CaptureMetrics(SimpleNamespace(), "resnet_classifier", "1", hook)  # what /metrics publishes
    try:
        serve(hook, results[:1], 1, prefix="first")
        wait_for(lambda: cap.queue_depth() == 0 and cap.write_errors >= 1, "the writer to hold the first request")
        ids = serve(hook, results, 6)  # 2 fit in the queue, 4 are dropped
        c = cap.counters()
        assert c["submitted"] == ROWS * 7
        assert c["dropped"] == ROWS * 4  # each dropped request's records, once
        assert metrics.counts()["dropped"] == ROWS * 4 and not hasattr(hook, "dropped")
        cap.min_free_bytes = 0  # the disk has room again: what was held gets written
        written = spooled(cap)
    finally:
        assert cap.close(timeout=30)
    assert sorted(written) == ["first0", ids[0], ids[1]]
    assert all(len(rows) == ROWS for rows in written.values())
    assert cap.counters()["written"] == ROWS * 3


def test_a_sampled_out_request_builds_nothing(answered, tmp_path, monkeypatch):
    rt, results = answered
    calls = collections.Counter()
    real_fields, real_contribution = record_module.record_fields, rt.contribution

    def counting_fields(*args, **kwargs):
        calls["record_fields"] += 1
        return real_fields(*args, **kwargs)

    def counting_contribution(*args, **kwargs):
        calls["contribution"] += 1
        return real_contribution(*args, **kwargs)

    monkeypatch.setattr(record_module, "record_fields", counting_fields)
    monkeypatch.setattr(rt, "contribution", counting_contribution)
    cap = Capturer(tmp_path, "resnet_classifier", sample_rate=0.25, deterministic=False, seed=2,
                   batch_size=64, flush_interval_s=0.05)
    hook = CaptureHook(rt, "1", cap)
    try:
        ids = serve(hook, results, 32)
        kept = len(ids) - cap.counters()["sampled_out"] // ROWS
        # On the request thread: a contribution per row of a kept request, no record fields.
        assert calls["contribution"] == ROWS * kept
        written = spooled(cap)
    finally:
        assert cap.close(timeout=30)
    assert 0 < len(written) == kept < len(ids)
    assert calls["record_fields"] == ROWS * kept  # the worker built only the kept requests' records
