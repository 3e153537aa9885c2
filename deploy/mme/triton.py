"""Triton as the endpoint sees it: the project's one HTTP client (serving/runtime/triton_http.py) with
the MME's error types, and how much memory a model's stubs use.

Model control uses Triton's repository extension (`--model-control-mode=explicit`), behind the
server's control secret (docs/security.md): `POST /v2/repository/models/<m>/load` answers once
the model is READY (or with the error); `.../unload` answers at once and the model passes
through UNLOADING while its stub finalizes, so `wait_unloaded` polls the repository index with
a deadline.
"""

from __future__ import annotations

import os
from pathlib import Path

from deploy.mme.errors import LoadFailed, TritonUnavailable, looks_like_oom
from serving.common import procfs
from serving.runtime.triton_http import TritonError, TritonHTTP, error_text
from serving.runtime.watchdog import config_instances

STUB_NAME = "triton_python_backend_stub"

__all__ = ["TritonControl", "error_text"]


class TritonControl(TritonHTTP):
    """The endpoint's tritonserver at `url`, serving the repository directory `repository`."""

    unreachable_error = TritonUnavailable

    def __init__(self, url: str, repository: Path, key: str | None = None) -> None:
        super().__init__(url, key)
        self.repository = Path(repository).resolve()
        self._instances: dict[str, int] = {}  # Triton name -> instances its config runs

    def call(self, method: str, path: str, body: bytes | None = None, timeout: float | None = None):
        try:
            return super().call(method, path, body, timeout)
        except TritonError as exc:
            if exc.status in (401, 403):  # a server locked with another key, or none given to us
                raise TritonUnavailable(f"tritonserver at {self.url} refused {method} {path}: {exc.detail} "
                                        "(the endpoint needs that server's control key in $TRITON_CONTROL_KEY)") from None
            raise

    def unload(self, name: str, timeout: float = 30.0) -> None:
        try:
            super().unload(name, timeout)
        except TritonError:  # not loaded, or already unloading: wait_unloaded() tells
            pass

    def load(self, name: str, timeout: float | None = None) -> None:
        self._instances.pop(name, None)  # its config may change with what is loaded
        try:
            super().load(name, timeout)
        except TritonError as exc:
            message = exc.detail
            raise LoadFailed(f"Triton failed to load model {name!r}: {message}",
                             507 if looks_like_oom(message) else 400) from None

    # -- memory ------------------------------------------------------------------------------
    def stubs_by_model(self) -> dict[str, list[int]]:
        """Python-backend stub processes serving models from our repository, by model name, in
        one pass over /proc.

        A stub's argv is `triton_python_backend_stub <repo>/<model>/<version>/model.py <shm> ...`,
        and our repository directory is ours alone, so the path identifies the model even when
        we attached to a server we did not start.
        """
        prefix = f"{self.repository}/"
        by_model: dict[str, list[int]] = {}
        for pid in procfs.pids():
            argv = procfs.cmdline(pid) or []
            if len(argv) > 1 and argv[0].endswith(STUB_NAME.encode()):
                path = argv[1].decode(errors="replace")
                if path.startswith(prefix):
                    by_model.setdefault(path[len(prefix):].split("/", 1)[0], []).append(pid)
        return by_model

    def stub_pids(self, name: str) -> list[int]:
        """The stub processes serving `name` from our repository."""
        return self.stubs_by_model().get(name, [])

    def instances(self, name: str) -> int | None:
        """How many instances (stubs) Triton runs of loaded model `name` (None: cannot tell)."""
        if name not in self._instances:
            try:
                config = self.config(name)
            except TritonError:
                return None
            if config.get("backend") != "python":
                return None  # only Python-backend models have stubs
            self._instances[name] = config_instances(config)
        return self._instances[name]

    def stub_missing(self, names: list[str]) -> set[str]:
        """The loaded models among `names` a stub of which died: fewer live stubs than instances.

        Every model runs two instances; when one stub dies Triton keeps the model READY and
        keeps handing the dead instance batches, which fail, until the watchdog reloads the
        model (serving/runtime/watchdog.py). A dead stub is a zombie with no command line, so
        `stubs_by_model` no longer lists it. One pass over /proc for all of them.
        """
        live = self.stubs_by_model()
        return {n for n in names if (expected := self.instances(n)) is not None and len(live.get(n, [])) < expected}

    def stub_rss(self, name: str) -> int | None:
        """Total resident bytes of the model's stub processes (None: no stub found)."""
        total, found = 0, False
        for pid in self.stub_pids(name):
            rss = procfs.rss_bytes(pid)
            if rss is not None:
                total, found = total + rss, True
        return total if found else None
