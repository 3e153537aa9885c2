"""Retry refusals with jittered backoff, within the caller's deadline.

A refusal (Triton UNAVAILABLE / HTTP 503: a full queue, a queue timeout, an expired deadline,
a model briefly reloading) says "not now", cheaply and before any work was done: retrying it
later is right. Retrying at once, or all clients in step, only feeds the overload that caused
it, so each wait is drawn uniformly from [0, min(cap, base * 2^attempt)] ("full jitter"), at
least the server's Retry-After when it gave one, and never past the caller's deadline: a
retry that could not finish in time is not sent and the refusal is the answer.

Used by `serving.launch.client`, `deploy invoke` and the load tester; each reports refusals apart
from errors (a refusal is the platform protecting itself, an error is a failure).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")

REFUSAL_STATUSES = {"503", "UNAVAILABLE", "STATUSCODE.UNAVAILABLE", "SERVICEUNAVAILABLE"}


# What Triton (queue full, queue timeout), our runtime (expired deadline) and our MME front say
# when they refuse; other UNAVAILABLE answers (out of memory on this request) are not refusals.
REFUSAL_MARKERS = ("exceeds maximum queue size", "request timeout expired", "request expired",
                   "overloaded and refused")


def is_refusal_status(status: object) -> bool:
    """Whether a status (HTTP code, gRPC code name, SageMaker error code) can mean "refused"."""
    return str(status or "").strip().upper() in REFUSAL_STATUSES


def is_refusal(status: object, message: str | None) -> bool:
    """Whether an answer is a refusal: "overloaded, nothing was done, retry later"."""
    if str(status or "").strip().upper() == "SERVICEUNAVAILABLE":  # SageMaker's own: always a refusal
        return True
    low = (message or "").lower()
    return is_refusal_status(status) and any(m in low for m in REFUSAL_MARKERS)


@dataclass(frozen=True)
class RetryPolicy:
    # At most 5 attempts, the first retry within 0.1 s: under a 4x overload most requests must be
    # refused in the end, and every extra attempt is load (P8 measured 8 attempts per request
    # with a 50 ms base and 10 attempts taking a visible share of a 2-core host).
    base_s: float = 0.1
    cap_s: float = 2.0
    max_attempts: int = 5

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError(f"retry base {self.base_s} s must be > 0 and <= cap {self.cap_s} s")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts {self.max_attempts} must be >= 1")

    def delay_s(self, attempt: int, rng: random.Random, retry_after_s: float | None = None) -> float:
        """The wait before retry number `attempt` (0-based)."""
        d = rng.uniform(0.0, min(self.cap_s, self.base_s * 2 ** attempt))
        if retry_after_s:
            # The server's hint, jittered upwards so that clients told the same do not return together.
            d = max(d, retry_after_s * rng.uniform(1.0, 1.5))
        return d


NO_RETRY = RetryPolicy(max_attempts=1)
# One interactive caller (`serving.launch.client`, `deploy invoke`): its few retries load nobody, and
# waits growing to 5 s span a queue of long SD calls (about 10 s of backoff on average).
PATIENT = RetryPolicy(max_attempts=10, cap_s=5.0)


class RetryBudget:
    """Retries as a share of successes, for a client that sends many calls (gRPC's retry
    throttling: a token bucket of `max_tokens`; a refusal takes one token, a success gives back
    `token_ratio`; retries go out only while more than half the tokens are left).

    Under a sustained overload most attempts are refused, the bucket empties and calls get one
    attempt each: retries cannot raise the goodput of a saturated server, and on a host the
    clients share with it they take its cores (P8: 4.3 attempts a request at 4x). After a burst
    the bucket refills with the successes. Thread-safe: one budget per client, shared by its
    threads.
    """

    def __init__(self, max_tokens: float = 10.0, token_ratio: float = 0.1):
        if max_tokens <= 0 or not 0 < token_ratio <= max_tokens:
            raise ValueError(f"retry budget: max_tokens {max_tokens} must be > 0 and token_ratio {token_ratio} "
                             "in (0, max_tokens]")
        self.max_tokens, self.token_ratio = float(max_tokens), float(token_ratio)
        self.tokens = self.max_tokens
        self.throttled = 0  # retries not sent because the budget was spent
        self._lock = threading.Lock()

    def on_success(self) -> None:
        with self._lock:
            self.tokens = min(self.max_tokens, self.tokens + self.token_ratio)

    def on_refusal(self) -> None:
        with self._lock:
            self.tokens = max(0.0, self.tokens - 1.0)

    def allow_retry(self) -> bool:
        with self._lock:
            ok = self.tokens > self.max_tokens / 2
            self.throttled += not ok
            return ok


@dataclass
class Attempts:
    """What the retries of one call saw: refusals, and the seconds each refused attempt took."""

    count: int = 0
    refusals: int = 0
    refusal_latencies_s: list[float] = field(default_factory=list)
    # Refusals the model process answered ("request expired": dropped before its pipeline call).
    # Triton's statistics count such answers as successes although nothing was computed.
    expired: int = 0


class Refused(Exception):
    """Raised by a `send` to mark its failure as a refusal; `retry_after_s` is the server's hint."""

    def __init__(self, message: str, retry_after_s: float | None = None, cause: BaseException | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.cause = cause


def call_with_retries(send: Callable[[float], T], deadline: float | None, policy: RetryPolicy = RetryPolicy(), *,
                      attempts: Attempts | None = None, rng: random.Random | None = None,
                      budget: RetryBudget | None = None,
                      clock: Callable[[], float] = time.monotonic,
                      sleep: Callable[[float], None] = time.sleep) -> T:
    """Call `send(remaining_s)` until it does not raise `Refused`, the attempts run out, the
    `budget` (shared by a client's calls) has no retry left, or the next retry would pass
    `deadline` (a `clock()` time; None: no deadline). The last `Refused` propagates; any other
    exception propagates at once (errors are not retried)."""
    attempts = attempts if attempts is not None else Attempts()
    rng = rng or random.Random()
    for attempt in range(policy.max_attempts):
        remaining = (deadline - clock()) if deadline is not None else float("inf")
        if remaining <= 0:
            raise Refused("the caller's deadline passed before the request could be sent")
        attempts.count += 1
        t0 = clock()
        try:
            result = send(remaining)
        except Refused as exc:
            attempts.refusals += 1
            attempts.refusal_latencies_s.append(clock() - t0)
            attempts.expired += "request expired" in str(exc).lower()
            if budget is not None:
                budget.on_refusal()
            if attempt + 1 >= policy.max_attempts:
                raise
            if budget is not None and not budget.allow_retry():
                raise  # this client's retries already exceed its share of successes
            wait = policy.delay_s(attempt, rng, exc.retry_after_s)
            if deadline is not None and clock() + wait >= deadline:
                raise  # a retry could not be answered in time: the refusal is the answer
            sleep(wait)  # backoff between attempts of a real call (not test synchronisation)
        else:
            if budget is not None:
                budget.on_success()
            return result
    raise AssertionError("unreachable")
