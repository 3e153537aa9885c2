"""Deadlines travel: parsing `deadline_ms`, and the real runtime dropping expired requests."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from serving.runtime.capture_hook import CaptureHook
from serving.runtime.deadline import MAX_MS, MIN_MS, parse_deadline, request_parameters, triton_timeout_us
from serving.runtime.device import DeviceSpec
from serving.runtime.errors import DeadlineExpiredError, InvalidInputError
from serving.runtime.models import runtime_class
from serving.runtime.models.base import RawRequest
from tests.conftest import png, tensor

NOW = 1_800_000_000_000


def test_parse_deadline_reads_epoch_ms_from_json_text_or_mapping():
    assert parse_deadline(None) is None
    assert parse_deadline("{}") is None
    assert parse_deadline('{"deadline_ms": %d}' % NOW) == NOW
    assert parse_deadline({"deadline_ms": str(NOW)}) == NOW


@pytest.mark.parametrize("value", [1_800_000_000, NOW * 1000, -5, True, "soon", 1.8e12])
def test_bad_deadline_names_the_parameter_value_and_range(value):
    with pytest.raises(InvalidInputError) as e:
        parse_deadline({"deadline_ms": value})
    text = str(e.value)
    assert "deadline_ms" in text and repr(value) in text and str(MIN_MS) in text and str(MAX_MS) in text


def test_client_parameters():
    assert request_parameters(None) == {}
    assert request_parameters(5.0, clock_ms=NOW) == {"deadline_ms": NOW + 5000}
    assert triton_timeout_us(0.25) == 250_000
    assert triton_timeout_us(-1.0) == 1  # a passed deadline still sends a valid (tiny) timeout


@pytest.fixture(scope="module")
def classifier(checkpoint):
    rt = runtime_class("resnet_classifier")(checkpoint("resnet_classifier"), DeviceSpec.for_instance("CPU"),
                                            max_pipeline_batch=4)
    rt.load()
    return rt


def test_expired_request_is_dropped_before_its_call_counted_and_captured_as_expired(classifier):
    rt = classifier
    rt.clock_ms = lambda: NOW
    before_calls, before = rt.pipeline_calls, dict(rt.counters)
    live = RawRequest({"image": tensor(png(32))}, "live", deadline_ms=NOW + 1000)
    late = RawRequest({"image": tensor(png(32, seed=1))}, "late", deadline_ms=NOW - 250)
    none = RawRequest({"image": tensor(png(32, seed=2))}, "none")
    results = rt.handle([live, late, none])
    assert results[0].error is None and results[2].error is None
    assert isinstance(results[1].error, DeadlineExpiredError) and results[1].expired
    assert results[1].error.code == "UNAVAILABLE"
    assert "250 ms" in str(results[1].error) and "resnet_classifier" in str(results[1].error)
    assert rt.pipeline_calls == before_calls + 1  # the live two shared one call; the late one ran in none
    assert rt.counters["expired"] == before["expired"] + 1
    assert rt.counters["finished_late"] == before["finished_late"]

    hook = CaptureHook(rt, "1", SimpleNamespace(enabled=False))
    records = list(hook.records(["live", "late", "none"], results, NOW))
    outcomes = {r["request_id"]: r["outcome"] for r in records}
    assert outcomes == {"live": "ok", "late": "expired", "none": "ok"}
    assert next(r for r in records if r["request_id"] == "late")["error_code"] == "UNAVAILABLE"


def test_request_that_cannot_finish_before_its_deadline_is_dropped(classifier):
    rt = classifier
    rt.clock_ms = lambda: NOW
    rt.recent_call_s.clear()
    rt.recent_call_s.extend([0.8, 0.5, 0.9])  # the fastest recent call took 500 ms
    before = rt.counters["expired"]
    results = rt.handle([RawRequest({"image": tensor(png(32))}, "soon", deadline_ms=NOW + 300),
                         RawRequest({"image": tensor(png(32, seed=1))}, "later", deadline_ms=NOW + 5000)])
    assert isinstance(results[0].error, DeadlineExpiredError) and results[0].expired
    assert "300 ms away, less than the 500 ms" in str(results[0].error)
    assert results[1].error is None
    assert rt.counters["expired"] == before + 1
    rt.recent_call_s.clear()


def test_call_that_ends_after_the_deadline_counts_as_late(classifier):
    rt = classifier
    rt.recent_call_s.clear()
    ticks = iter([NOW, NOW + 5000])  # checked in time, finished 5 s later
    rt.clock_ms = lambda: next(ticks)
    before = rt.counters["finished_late"]
    results = rt.handle([RawRequest({"image": tensor(png(32))}, "slow", deadline_ms=NOW + 1000)])
    assert results[0].error is None
    assert rt.counters["finished_late"] == before + 1
