"""Per-window claims in the store: with N sidecars (one per instance) each window is scored once.

A claim is an object created only if absent::

    _monitoring/watch/claims/model=<m>/<window state>.g<generation>.json   {owner, expires_ms}

On S3 that is ``put_object(IfNoneMatch="*")`` (S3 conditional writes, honoured by moto too); in
a local store ``open(O_CREAT | O_EXCL)``. Exactly one writer creates a given key. A claim whose
owner died (``expires_ms`` passed, no ledger entry) is taken over by creating the next
generation, again create-if-absent, so a takeover race also has one winner and nothing is
ever deleted or overwritten (no If-Match needed).
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import uuid
from typing import Any

from monitoring.analysis.artifacts import read_json

from .ledger import WATCH_PREFIX, WindowState
from monitoring.capture.fields import check_model_name

DEFAULT_TTL_S = 900.0


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def put_if_absent(backend: Any, key: str, data: bytes) -> bool:
    """Create ``key`` holding ``data`` unless it exists; True when this call created it."""
    if getattr(backend, "kind", "") == "s3":
        from botocore.exceptions import ClientError

        try:
            backend.client.put_object(Bucket=backend.bucket, Key=backend._k(key), Body=data, IfNoneMatch="*")
            return True
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                return False
            raise
    path = backend.url(key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return True


def claims_prefix(model: str) -> str:
    return f"{WATCH_PREFIX}claims/model={check_model_name(model)}/"


def claim(backend: Any, model: str, state: WindowState, owner: str, *, ttl_s: float = DEFAULT_TTL_S,
          now_ms: int | None = None) -> bool:
    """Try to become the one scorer of ``state``; False when a live claim of another owner holds it."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    pat = re.compile(re.escape(state.name) + r"\.g(\d+)\.json$")
    gens = sorted(int(m.group(1)) for e in backend.list(claims_prefix(model)) if (m := pat.search(e.key)))
    gen = 0
    if gens:
        top = gens[-1]
        try:
            held = read_json(backend, f"{claims_prefix(model)}{state.name}.g{top}.json")
        except Exception:  # noqa: BLE001 - unreadable claim: treat as held until the next pass
            return False
        if held.get("owner") == owner:
            return True
        if int(held.get("expires_ms", 0)) > now:
            return False
        gen = top + 1
    body = json.dumps({"owner": owner, "claimed_ms": now, "expires_ms": now + int(ttl_s * 1000)}).encode()
    return put_if_absent(backend, f"{claims_prefix(model)}{state.name}.g{gen}.json", body)
