"""The few tritonserver HTTP calls the endpoint needs, and how much memory a model's stubs use.

Model control uses Triton's repository extension (`--model-control-mode=explicit`):
`POST /v2/repository/models/<m>/load` answers once the model is READY (or with the error);
`.../unload` answers at once and the model passes through UNLOADING while its stub finalizes,
so `wait_unloaded` polls the repository index with a deadline.
"""

from __future__ import annotations

import http.client
import json
import os
import time
from pathlib import Path
from urllib.parse import quote, urlparse

from deploy.mme.errors import LoadFailed, TritonUnavailable, looks_like_oom

STUB_NAME = "triton_python_backend_stub"
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _hostport(url: str) -> tuple[str, int]:
    parsed = urlparse(url if "//" in url else f"http://{url}")
    return parsed.hostname or "127.0.0.1", parsed.port or 8000


class TritonControl:
    def __init__(self, url: str, repository: Path) -> None:
        self.host, self.port = _hostport(url)
        self.repository = Path(repository).resolve()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                timeout: float = 30.0) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise TritonUnavailable(f"tritonserver at {self.url} is unreachable: {exc}") from None
        finally:
            conn.close()

    def live(self) -> bool:
        try:
            return self.request("GET", "/v2/health/live", timeout=5)[0] == 200
        except TritonUnavailable:
            return False

    def index(self) -> list[dict]:
        status, _, body = self.request("POST", "/v2/repository/index", b"{}", {"Content-Type": "application/json"})
        return json.loads(body) if status == 200 else []

    def state(self, name: str) -> str | None:
        """READY / LOADING / UNLOADING / UNAVAILABLE per the repository index; None if not listed."""
        for entry in self.index():
            if entry.get("name") == name:
                return entry.get("state") or None
        return None

    def ready(self, name: str) -> bool:
        return self.request("GET", f"/v2/models/{quote(name)}/ready", timeout=5)[0] == 200

    def load(self, name: str, timeout: float) -> None:
        status, _, body = self.request("POST", f"/v2/repository/models/{quote(name)}/load", b"",
                                       timeout=timeout)
        if status != 200:
            message = _error_text(body) or f"HTTP {status}"
            raise LoadFailed(f"Triton failed to load model {name!r}: {message}",
                             507 if looks_like_oom(message) else 400)

    def unload(self, name: str) -> None:
        self.request("POST", f"/v2/repository/models/{quote(name)}/unload", b"")

    def wait_unloaded(self, name: str, timeout: float = 120.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.state(name) in (None, "UNAVAILABLE"):
                return True
            time.sleep(0.1)  # polling Triton's state with a deadline
        return False

    def infer(self, name: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, dict, bytes]:
        return self.request("POST", f"/v2/models/{quote(name)}/infer", body, headers, timeout=timeout)

    # -- memory ------------------------------------------------------------------------------
    def stub_pids(self, name: str) -> list[int]:
        """Python-backend stub processes serving `name` from our repository.

        A stub's argv is `triton_python_backend_stub <repo>/<model>/<version>/model.py <shm> ...`,
        and our repository directory is ours alone, so the path identifies the model even when
        we attached to a server we did not start.
        """
        prefix = f"{self.repository}/{name}/"
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    argv = fh.read().split(b"\0")
            except OSError:
                continue
            if len(argv) > 1 and argv[0].endswith(STUB_NAME.encode()) and \
                    argv[1].decode(errors="replace").startswith(prefix):
                pids.append(int(entry))
        return pids

    def stub_rss(self, name: str) -> int | None:
        """Total resident bytes of the model's stub processes (None: no stub found)."""
        total, found = 0, False
        for pid in self.stub_pids(name):
            try:
                with open(f"/proc/{pid}/statm") as fh:
                    total += int(fh.read().split()[1]) * _PAGE
                found = True
            except (OSError, ValueError, IndexError):
                continue
        return total if found else None


def _error_text(body: bytes) -> str:
    try:
        doc = json.loads(body)
        if isinstance(doc, dict) and "error" in doc:
            return str(doc["error"])
    except (ValueError, UnicodeDecodeError):
        pass
    return body.decode(errors="replace")[:2000]


def error_text(body: bytes) -> str:
    return _error_text(body)
