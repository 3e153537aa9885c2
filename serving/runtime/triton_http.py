"""The one Triton HTTP control-plane client, and the lock on Triton's control plane.

Every shape of this project runs tritonserver with explicit model control (the watchdog needs
the repository API), and that API loads code: a load request may carry its own ``model.py``
(``"file:1/model.py": <base64>``). So every tritonserver we start is given a per-server secret
at start (:func:`new_control_key`) and the flags :func:`restricted_args`: the model-repository,
model-config and shared-memory APIs (and the logging and trace settings) answer 403 ("This API
is restricted, expecting header 'triton-control-key'") unless the request carries
``triton-control-key: <secret>`` (on gRPC: ``triton-grpc-protocol-triton-control-key``).
Inference, health, metadata and statistics stay open.

The secret lives in memory and in the environment of the processes that need it, under
:data:`CONTROL_KEY_ENV`: tritonserver's own environment (so the model processes can hand it to
the watchdog they start, serving/runtime/host_services.py), the watchdog, the MME front and the soak
(and, for the operator of `make serve`, a 0600 file under var/run). Never in the repository, never in a log line: :class:`TritonHTTP` sends it only on
control-plane paths and never puts it in an error message. Triton takes it on its command
line only (no file or environment option in 2.51), so :func:`hide_in_argv` overwrites it there
once Triton has parsed its options; see docs/security.md.

:class:`TritonHTTP` is the client: plain ``http.client`` (no event loop to share with the
watchdog's Prometheus thread), used by the watchdog, the MME front (deploy/mme/triton.py adds
its memory accounting and error types), the soak and the tests.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlparse

from serving.common import procfs

#: The header Triton checks on restricted APIs (lower case: gRPC metadata keys must be).
CONTROL_HEADER = "triton-control-key"
#: On gRPC, Triton 2.51 expects the header under this prefixed name (seen in its refusal:
#: "expecting header 'triton-grpc-protocol-triton-control-key'").
GRPC_CONTROL_HEADER = "triton-grpc-protocol-" + CONTROL_HEADER
#: Where our processes find the secret of the tritonserver they work with.
CONTROL_KEY_ENV = "TRITON_CONTROL_KEY"
#: The APIs that can change what the server runs or read/write its memory, and those that
#: change where and how much it logs and traces (verbose logs and trace files are ways out).
RESTRICTED_APIS = ("model-repository", "model-config", "shared-memory", "logging", "trace")
#: URL path prefixes of those APIs on Triton's HTTP front end (config: ``/v2/models/<m>[/versions/<v>]/config``).
_CONTROL_PREFIXES = ("/v2/repository", "/v2/systemsharedmemory", "/v2/cudasharedmemory", "/v2/logging", "/v2/trace")


def new_control_key() -> str:
    """A fresh per-server secret (256 bits, URL-safe: it travels in a header and an argv)."""
    return secrets.token_urlsafe(32)


def restricted_args(key: str) -> list[str]:
    """tritonserver flags that put the control-plane APIs behind ``CONTROL_HEADER: key``.

    Syntax checked against the bundled 2.51 binary: ``<apis>:<header>=<value>`` (its --help
    shows a comma before the header; a comma there is refused at start).
    """
    if not key or any(c in key for c in ":=, \t\n"):
        raise ValueError(f"control key must be non-empty without ':', '=', ',' or whitespace (length {len(key)})")
    spec = f"{','.join(RESTRICTED_APIS)}:{CONTROL_HEADER}={key}"
    return [f"--http-restricted-api={spec}", f"--grpc-restricted-protocol={spec}"]


def has_restriction(argv: list[str]) -> bool:
    """Whether a tritonserver command line already restricts some API (the caller's own choice)."""
    return any(a.startswith(("--http-restricted-api", "--grpc-restricted-protocol")) for a in argv)


def control_key(environ: Mapping[str, str] | None = None) -> str | None:
    """The secret our process was handed (``$TRITON_CONTROL_KEY``), or None."""
    value = (os.environ if environ is None else environ).get(CONTROL_KEY_ENV, "").strip()
    return value or None


def control_headers(key: str | None, grpc: bool = False) -> dict[str, str]:
    """Headers for a control-plane call (tritonclient: ``headers=control_headers(key)``; for
    ``tritonclient.grpc``, ``control_headers(key, grpc=True)``)."""
    return {GRPC_CONTROL_HEADER if grpc else CONTROL_HEADER: key} if key else {}


def hide_in_argv(pid: int, key: str) -> bool:
    """Overwrite ``key`` with ``*`` in process ``pid``'s argument memory, so that
    ``/proc/<pid>/cmdline`` (readable by every local user) no longer shows it.

    Only once Triton is ready: it copied its options into its own strings while parsing, and
    never reads argv again. Needs ptrace rights over ``pid`` (its parent has them unless the
    host forbids it, e.g. Yama ptrace_scope >= 2); returns False when it could not.
    """
    try:
        fields = procfs.stat_fields(pid)
        if fields is None:
            return False
        # proc(5): arg_start and arg_end are fields 48 and 49; fields[0] is field 3.
        start, end = int(fields[45]), int(fields[46])
        needle = key.encode()
        with open(f"/proc/{pid}/mem", "r+b", buffering=0) as mem:
            mem.seek(start)
            args = mem.read(end - start)
            at = args.find(needle)
            while at >= 0:
                mem.seek(start + at)
                mem.write(b"*" * len(needle))
                at = args.find(needle, at + len(needle))
        argv = procfs.cmdline(pid)
        return argv is not None and needle not in b"\0".join(argv)
    except (OSError, ValueError, IndexError):
        return False


class TritonError(Exception):
    """Triton answered with an error (``status`` is its HTTP status, ``detail`` its message),
    or did not answer (status 0)."""

    def __init__(self, message: str, status: int = 0, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail or message


class TritonUnreachable(TritonError):
    """Nothing answered at Triton's address (not started, gone, or the connection broke)."""


def _hostport(url: str) -> tuple[str, int]:
    parsed = urlparse(url if "//" in url else f"http://{url}")
    return parsed.hostname or "127.0.0.1", parsed.port or 8000


def error_text(body: bytes) -> str:
    """Triton's ``{"error": ...}`` message, else the start of the body."""
    try:
        doc = json.loads(body)
        if isinstance(doc, dict) and "error" in doc:
            return str(doc["error"])
    except (ValueError, UnicodeDecodeError):
        pass
    return body.decode(errors="replace")[:2000]


class TritonHTTP:
    """Triton's HTTP/REST API (KServe v2 + repository, statistics, config) at ``url`` (host:port).

    Args:
        url: host:port or http://host:port.
        key: the server's control secret; None: ``$TRITON_CONTROL_KEY`` (or none: the
            control-plane calls of a restricted server then fail with HTTP 403).
        timeout_s: default timeout of a call (a load may take minutes).
    """

    unreachable_error: type[Exception] = TritonUnreachable  # deploy/mme raises its own type

    def __init__(self, url: str, key: str | None = None, timeout_s: float = 600.0) -> None:
        self.host, self.port = _hostport(url)
        self.key = key if key is not None else control_key()
        self.timeout_s = timeout_s

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def headers_for(self, path: str) -> dict[str, str]:
        """The control header on control-plane paths only: inference never carries the secret."""
        bare = path.split("?", 1)[0]
        control = bare.startswith(_CONTROL_PREFIXES) or (bare.startswith("/v2/models/") and bare.endswith("/config"))
        return control_headers(self.key) if control else {}

    def request(self, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] | None = None,
                timeout: float | None = None) -> tuple[int, dict[str, str], bytes]:
        """One call: (status, lower-cased headers, body); raises ``unreachable_error`` if nobody answers."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout or self.timeout_s)
        all_headers = {**self.headers_for(path), **(headers or {})}
        if body is not None and "Content-Type" not in all_headers:
            all_headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=body, headers=all_headers)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise self.unreachable_error(f"tritonserver at {self.url} is unreachable ({method} {path}): {exc}") from None
        finally:
            conn.close()

    def call(self, method: str, path: str, body: bytes | None = None, timeout: float | None = None) -> Any:
        """One call whose answer must be 2xx; its JSON body (None if empty)."""
        status, _, data = self.request(method, path, body, timeout=timeout)
        if not 200 <= status < 300:
            detail = error_text(data)
            raise TritonError(f"{method} {path}: HTTP {status}: {detail[:500]}", status, detail)
        return json.loads(data) if data else None

    # -- health / metadata (open) -------------------------------------------------------------
    def live(self) -> bool:
        try:
            return self.request("GET", "/v2/health/live", timeout=5)[0] == 200
        except Exception:  # noqa: BLE001 - unreachable_error may be any type; not live either way
            return False

    def ready(self, model: str) -> bool:
        try:
            return self.request("GET", f"/v2/models/{quote(model)}/ready", timeout=10)[0] == 200
        except Exception:  # noqa: BLE001 - as live()
            return False

    def statistics(self) -> dict:
        return self.call("GET", "/v2/models/stats", timeout=10) or {}

    def infer(self, model: str, body: bytes, headers: Mapping[str, str], timeout: float) -> tuple[int, dict, bytes]:
        return self.request("POST", f"/v2/models/{quote(model)}/infer", body, headers, timeout=timeout)

    # -- control plane (restricted) -----------------------------------------------------------
    def index(self) -> list[dict]:
        return self.call("POST", "/v2/repository/index", b"{}", timeout=10) or []

    def state(self, model: str) -> str | None:
        """READY / LOADING / UNLOADING / UNAVAILABLE per the repository index; None if not listed."""
        for entry in self.index():
            if entry.get("name") == model:
                return entry.get("state") or None
        return None

    def config(self, model: str) -> dict:
        return self.call("GET", f"/v2/models/{quote(model)}/config", timeout=10) or {}

    def load(self, model: str, timeout: float | None = None) -> None:
        """Load (or reload, if its files changed) ``model``; answers once it is READY or failed."""
        self.call("POST", f"/v2/repository/models/{quote(model)}/load", b"{}", timeout=timeout)

    def unload(self, model: str, timeout: float = 30.0) -> None:
        """Ask Triton to unload ``model``; it passes through UNLOADING while its stub finalizes."""
        self.call("POST", f"/v2/repository/models/{quote(model)}/unload", b"{}", timeout=timeout)

    def wait_unloaded(self, model: str, timeout: float = 120.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.state(model) in (None, "UNAVAILABLE"):
                return True
            time.sleep(0.1)  # polling Triton's state with a deadline
        return False
