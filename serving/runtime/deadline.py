"""Deadlines that travel with a request: the caller's `deadline_ms` request parameter, or the
`X-Request-Deadline-Ms` HTTP header (gRPC metadata `x-request-deadline-ms`) for callers that
cannot touch the body. Triton hands a header to the model only when told to
(`--http-header-forward-pattern`, which `serving.launch.server.TritonProcess` always passes); it then
arrives as a request parameter named like the header. With both, the earlier instant wins.

A client that will give up at some instant says so (`deadline_ms`, epoch milliseconds UTC),
so that the runtime can drop the request instead of computing for nobody when it is still
queued past that instant (`ModelRuntime._run_group`). Triton's own per-request `timeout`
(microseconds, shorter than the model's queue policy only) rejects it while it waits in the
queue; the two together cover the queue and the last moment before the pipeline call.

Epoch time assumes the client's and server's clocks agree (NTP): a skew of s seconds moves
the drop by s.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from serving.runtime.errors import InvalidInputError

PARAMETER = "deadline_ms"
HEADER = "X-Request-Deadline-Ms"
# What tritonserver forwards to the model as request parameters (RE2; header names are
# case-insensitive in HTTP and lower case in gRPC metadata). Nothing else: other headers
# (auth, cookies) must not reach model code or capture.
HEADER_FORWARD_PATTERN = "(?i)^x-request-deadline-ms$"
# Accepted range: 2020-01-01 .. 2100-01-01; anything else is a unit mistake (seconds, µs).
MIN_MS, MAX_MS = 1_577_836_800_000, 4_102_444_800_000


def now_ms() -> int:
    return int(time.time() * 1000)


def parse_deadline(parameters: str | Mapping[str, Any] | None) -> int | None:
    """The request's deadline (epoch ms) from `request.parameters()` (JSON text), or None: the
    `deadline_ms` parameter or the forwarded header, the earlier of the two when both are set."""
    if not parameters:
        return None
    params = json.loads(parameters) if isinstance(parameters, str) else parameters
    found = [_check(PARAMETER, "request parameter", params.get(PARAMETER))]
    found += [_check(key, "header", value) for key, value in params.items()
              if isinstance(key, str) and key.lower() == HEADER.lower()]
    found = [v for v in found if v is not None]
    return min(found) if found else None


def _check(name: str, what: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_MS <= value <= MAX_MS:
        raise InvalidInputError(
            f"{what} '{name}': {value!r} must be epoch milliseconds (UTC) between {MIN_MS} and {MAX_MS}")
    return value


def request_parameters(deadline_s: float | None, clock_ms: int | None = None) -> dict[str, int]:
    """`{"deadline_ms": ...}` for a request whose caller gives up `deadline_s` from now."""
    if deadline_s is None:
        return {}
    return {PARAMETER: (clock_ms if clock_ms is not None else now_ms()) + int(deadline_s * 1000)}


def triton_timeout_us(remaining_s: float) -> int:
    """Triton's per-request queue `timeout` for what is left of the caller's deadline (>= 1 µs)."""
    return max(1, int(remaining_s * 1e6))
