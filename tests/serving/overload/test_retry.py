"""Refusals are retried with jittered backoff, never past the caller's deadline; errors are not."""

from __future__ import annotations

import random

import pytest
from botocore.exceptions import ClientError

from deploy.invoke import refusal_of
from serving.common.retry import Attempts, Refused, RetryPolicy, call_with_retries, is_refusal, is_refusal_status


class FakeClock:
    """Virtual time: `sleep` advances it, so backoff is checked without waiting."""

    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s


def test_refusal_statuses():
    for s in ("503", 503, "UNAVAILABLE", "StatusCode.UNAVAILABLE", "ServiceUnavailable"):
        assert is_refusal_status(s), s
    for s in ("500", "400", "INTERNAL", None, "ThrottlingExceptionX"):
        assert not is_refusal_status(s), s


def test_refused_then_ok_retries_with_growing_jittered_waits():
    clock, answers = FakeClock(), iter([Refused("full")] * 3 + ["ok"])

    def send(remaining):
        a = next(answers)
        if isinstance(a, Exception):
            raise a
        return a

    attempts = Attempts()
    out = call_with_retries(send, 10.0, RetryPolicy(base_s=0.1, cap_s=1.0), attempts=attempts,
                            rng=random.Random(1), clock=clock, sleep=clock.sleep)
    assert out == "ok" and attempts.count == 4 and attempts.refusals == 3
    assert len(clock.sleeps) == 3
    assert all(0 <= w <= min(1.0, 0.1 * 2 ** i) for i, w in enumerate(clock.sleeps))
    assert len(set(clock.sleeps)) == 3  # jittered, not in lock step


def test_no_retry_past_the_deadline_and_retry_after_is_honoured():
    clock = FakeClock()
    remaining_seen = []

    def send(remaining):
        remaining_seen.append(remaining)
        raise Refused("full", retry_after_s=0.4)

    attempts = Attempts()
    with pytest.raises(Refused):
        call_with_retries(send, 1.0, RetryPolicy(base_s=0.01, cap_s=0.02), attempts=attempts,
                          rng=random.Random(2), clock=clock, sleep=clock.sleep)
    assert all(w >= 0.4 for w in clock.sleeps)  # at least the server's hint
    assert attempts.expired == 0
    assert clock.t < 1.0 and attempts.refusals == len(remaining_seen) >= 2
    assert remaining_seen == sorted(remaining_seen, reverse=True)  # each attempt gets what is left


def test_errors_are_not_retried():
    calls = []

    def send(remaining):
        calls.append(1)
        raise ValueError("bad input")

    with pytest.raises(ValueError):
        call_with_retries(send, 10.0, RetryPolicy(), clock=FakeClock())
    assert len(calls) == 1


def test_bad_policy_is_refused_by_name():
    with pytest.raises(ValueError, match="retry base 0 s"):
        RetryPolicy(base_s=0)


def test_refusal_needs_a_refusal_status_and_message():
    assert is_refusal("503", "[request id: x] Exceeds maximum queue size")
    assert is_refusal("StatusCode.UNAVAILABLE", "Request timeout expired")
    assert is_refusal("UNAVAILABLE", "request expired: its deadline (deadline_ms 1) passed")
    assert not is_refusal("503", "out of memory while running the pipeline")  # this request's own problem
    assert not is_refusal("500", "Exceeds maximum queue size")


def _client_error(status: int, code: str, headers: dict | None = None, original: int | None = None) -> ClientError:
    response = {"Error": {"Code": code, "Message": "Exceeds maximum queue size"},
                "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers or {}}}
    if original is not None:
        response["OriginalStatusCode"] = original
    return ClientError(response, "InvokeEndpoint")


def test_sagemaker_refusals_are_recognised_with_retry_after():
    r = refusal_of(_client_error(503, "ServiceUnavailable", {"retry-after": "2"}))
    assert r is not None and r.retry_after_s == 2.0
    assert refusal_of(_client_error(424, "ModelError", original=503)) is not None
    assert refusal_of(_client_error(400, "ThrottlingException")) is not None
    assert refusal_of(_client_error(424, "ModelError", original=400)) is None
    assert refusal_of(_client_error(400, "ValidationError")) is None


def test_retry_budget_is_grpc_retry_throttling():
    from serving.common.retry import RetryBudget

    b = RetryBudget(max_tokens=10, token_ratio=0.1)
    for _ in range(4):
        b.on_refusal()
    assert b.tokens == 6 and b.allow_retry()  # more than half left
    b.on_refusal()
    assert b.tokens == 5 and not b.allow_retry() and b.throttled == 1  # half: no more retries
    for _ in range(11):
        b.on_success()
    assert b.tokens == pytest.approx(6.1) and b.allow_retry()  # successes earn retries back
    for _ in range(100):
        b.on_success()
    assert b.tokens == 10  # capped
    with pytest.raises(ValueError, match="token_ratio 0"):
        RetryBudget(token_ratio=0)


def test_a_spent_budget_makes_every_call_one_attempt_until_successes_refill_it():
    from serving.common.retry import RetryBudget

    clock, budget = FakeClock(), RetryBudget(max_tokens=4, token_ratio=1.0)

    def refused(_remaining):
        raise Refused("Exceeds maximum queue size")

    counts = []
    for _ in range(4):  # a saturated server: every attempt refused
        a = Attempts()
        with pytest.raises(Refused):
            call_with_retries(refused, 1e9, RetryPolicy(max_attempts=5), attempts=a, budget=budget,
                              rng=random.Random(0), clock=clock, sleep=clock.sleep)
        counts.append(a.count)
    # 4 tokens: the first call retries while more than 2 are left (refusals 1 and 2 leave 3 and 2),
    # then every call is one attempt; without a budget each would have made 5.
    assert counts == [2, 1, 1, 1] and budget.throttled == 4
    for _ in range(3):
        assert call_with_retries(lambda _r: "ok", 1e9, RetryPolicy(), budget=budget, clock=clock, sleep=clock.sleep) == "ok"
    assert budget.tokens == 3 and budget.allow_retry()
