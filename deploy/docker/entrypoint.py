#!/usr/bin/env python3
"""Container entrypoint: supervise tritonserver and the capture sidecar (docker / BYOC images).

    python3 deploy/docker/entrypoint.py tritonserver --model-repository=/models ...   # any server command

* The server command (the image's CMD, or SageMaker's ``serve``) runs as the main child, with
  ``HOST_SERVICES_SKIP=sidecar`` so its models do not start a second sidecar (this supervisor
  runs it; other host services still start from the models, see serving/runtime/host_services.py).
* The control plane is locked (docs/security.md): when the server command is ``tritonserver``
  without restriction flags of its own, a fresh secret (or ``$TRITON_CONTROL_KEY``, if the
  operator set one to call the repository API themselves) puts the model-repository,
  model-config and shared-memory APIs behind the ``triton-control-key`` header on HTTP and gRPC.
  The key reaches tritonserver's environment (its models hand it to the watchdog) and nothing
  else; once Triton answers on HTTP it is overwritten in tritonserver's command line.
* The sidecar runs when ``CAPTURE_STORE`` is set (a directory or ``s3://bucket/prefix``; spool
  ``CAPTURE_SPOOL_DIR``), with the same settings the models would give it.
* The sidecar dying is not fatal: it is restarted with backoff (1 s doubling to 30 s) and each
  restart is logged with its downtime; the spool keeps records meanwhile (bounded).
* The server dying is fatal: the sidecar is drained and stopped, and the container exits with
  the server's status (128 + signal when killed), so ``docker --restart`` or SageMaker's health
  check replaces it. Restarting tritonserver in place would come back with no models loaded
  while SageMaker's MME still believes they are.
* SIGTERM / SIGINT: stop the server first (its models flush their capture queues to the
  spool), then the sidecar (it drains the spool into the store), then exit 0. Give the
  container time for both: ``docker stop -t 90`` / ``--stop-timeout 90``.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo (tests) or /opt/platform (image)

from serving.runtime import host_services  # noqa: E402
from serving.runtime.triton_http import (CONTROL_KEY_ENV, control_key, has_restriction, hide_in_argv,  # noqa: E402
                                         new_control_key, restricted_args)

log = logging.getLogger("entrypoint")

POLL_S = 0.2
RESTART_MIN_S, RESTART_MAX_S = 1.0, 30.0


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name) or default)
    except ValueError:
        raise SystemExit(f"entrypoint: {name} must be a number of seconds, got {os.environ[name]!r}") from None


def _exit_status(code: int) -> int:
    return 128 - code if code < 0 else code  # Popen: -N = killed by signal N


class Supervisor:
    def __init__(self, server_argv: list[str], environ: dict[str, str] | None = None) -> None:
        self.env = dict(os.environ if environ is None else environ)
        skip = [s for s in self.env.get("HOST_SERVICES_SKIP", "").split(",") if s]
        self.server_env = dict(self.env, HOST_SERVICES_SKIP=",".join(skip + ["sidecar"]))
        self.server_argv, self.control_key = lock_control_plane(server_argv, self.env)
        self.server_env.pop(CONTROL_KEY_ENV, None)
        if self.control_key:
            self.server_env[CONTROL_KEY_ENV] = self.control_key
        self.env.pop(CONTROL_KEY_ENV, None)  # the sidecar's environment: it needs no key
        self.key_hidden = not self.control_key
        settings = host_services.host_settings({}, self.env, server_pid=0)
        self.sidecar = host_services.sidecar_service(settings)
        self.server: subprocess.Popen | None = None
        self.sidecar_proc: subprocess.Popen | None = None
        self.stopping = False
        self.restart_delay = RESTART_MIN_S
        self.sidecar_down_since: float | None = None
        self.server_stop_s = _env_float("ENTRYPOINT_SERVER_STOP_TIMEOUT_S", 60.0)
        self.sidecar_stop_s = _env_float("ENTRYPOINT_SIDECAR_STOP_TIMEOUT_S", 45.0)

    def start_sidecar(self) -> None:
        assert self.sidecar is not None
        self.sidecar_proc = subprocess.Popen(list(self.sidecar.argv), env=dict(self.env, **self.sidecar.env))
        log.info("sidecar started (pid %d): %s", self.sidecar_proc.pid, " ".join(self.sidecar.argv[1:]))

    def on_signal(self, signum: int, _frame: object) -> None:
        if not self.stopping:
            log.info("received %s: stopping tritonserver, then draining the sidecar", signal.Signals(signum).name)
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        if self.sidecar is not None:
            self.start_sidecar()
        else:
            log.warning("CAPTURE_STORE is not set: no sidecar, captured records stay in the (bounded) spool %s",
                        self.env.get("CAPTURE_SPOOL_DIR") or "(capture off)")
        self.server = subprocess.Popen(self.server_argv, env=self.server_env)
        log.info("server started (pid %d): %s", self.server.pid,
                 " ".join(self.server_argv).replace(self.control_key or "\0", "<control key>"))
        next_restart = 0.0
        while not self.stopping:
            if not self.key_hidden:
                self.hide_key()
            code = self.server.poll()
            if code is not None:
                log.error("server exited unexpectedly with %s: draining the sidecar and exiting (the container "
                          "goes down so its orchestrator replaces it)", code)
                self.stop_sidecar()
                return _exit_status(code) or 1
            if self.sidecar_proc is not None and self.sidecar_proc.poll() is not None:
                now = time.monotonic()
                if self.sidecar_down_since is None:
                    self.sidecar_down_since = now
                    next_restart = now + self.restart_delay
                    log.error("sidecar exited with %s; restarting in %.0f s", self.sidecar_proc.returncode, self.restart_delay)
                if now >= next_restart:
                    self.start_sidecar()
                    log.warning("sidecar restarted %.1f s after it exited", now - self.sidecar_down_since)
                    self.sidecar_down_since = None
                    self.restart_delay = min(self.restart_delay * 2, RESTART_MAX_S)
            elif self.sidecar_proc is not None and self.sidecar_down_since is None:
                self.restart_delay = max(RESTART_MIN_S, self.restart_delay * 0.99)  # calm again: back to fast restarts
            time.sleep(POLL_S)
        code = self.stop_server()
        self.stop_sidecar()
        return _exit_status(code)

    def hide_key(self) -> None:
        """Once tritonserver answers on HTTP (its options are parsed), take the key out of its argv."""
        assert self.server is not None and self.control_key
        url = http_url(self.server_argv)
        if url is None:  # HTTP off: nothing tells us when parsing is done; leave it
            log.warning("tritonserver has HTTP off: its control key stays on its command line")
            self.key_hidden = True
            return
        try:
            with urllib.request.urlopen(f"http://{url}/v2/health/live", timeout=1) as r:
                live = r.status == 200
        except (urllib.error.URLError, OSError):
            live = False
        if live:
            self.key_hidden = True
            if not hide_in_argv(self.server.pid, self.control_key):
                log.warning("could not overwrite the control key in tritonserver's command line (pid %d)",
                            self.server.pid)

    def stop_server(self) -> int:
        assert self.server is not None
        if self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)  # graceful: in-flight requests finish, models flush capture
            try:
                return self.server.wait(self.server_stop_s)
            except subprocess.TimeoutExpired:
                log.error("server still running %.0f s after SIGTERM: killing it", self.server_stop_s)
                self.server.kill()
        return self.server.wait()

    def stop_sidecar(self) -> None:
        proc = self.sidecar_proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)  # it drains the spool into the store, then exits
        try:
            proc.wait(self.sidecar_stop_s)
            if proc.returncode == 0:
                log.info("sidecar drained and stopped")
            else:
                log.error("sidecar stopped with %s before draining; the spool keeps the rest", proc.returncode)
        except subprocess.TimeoutExpired:
            log.error("sidecar still draining after %.0f s: killing it (the rest stays in the spool)", self.sidecar_stop_s)
            proc.kill()
            proc.wait()


def lock_control_plane(argv: list[str], environ: dict[str, str]) -> tuple[list[str], str | None]:
    """The server command with Triton's control plane behind a secret, and that secret.

    Only a plain ``tritonserver`` command is changed; one that already restricts some API is
    the operator's choice and is left alone, and any other command (e.g. SageMaker's ``serve``)
    cannot be, which the log says.
    """
    if not argv or os.path.basename(argv[0]) != "tritonserver":
        log.warning("server command %r is not tritonserver: its control plane is not locked by this entrypoint "
                    "(docs/security.md)", argv[0] if argv else "")
        return argv, None
    if has_restriction(argv):
        log.info("tritonserver command restricts its APIs itself: left as given")
        return argv, None
    key = control_key(environ) or new_control_key()
    try:
        return argv + restricted_args(key), key
    except ValueError as exc:  # an operator's key that cannot go into Triton's flag
        raise SystemExit(f"entrypoint: {CONTROL_KEY_ENV}: {exc}") from None


def http_url(argv: list[str]) -> str | None:
    """Where tritonserver answers HTTP, from its command line (None: HTTP off)."""
    opts = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    if opts.get("allow-http", "true").lower() in ("false", "0"):
        return None
    address = opts.get("http-address", "0.0.0.0")
    return f"{'127.0.0.1' if address in ('0.0.0.0', '::') else address}:{opts.get('http-port', '8000')}"


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s entrypoint %(levelname)s %(message)s", stream=sys.stderr)
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: entrypoint.py <server command...>", file=sys.stderr)
        return 2
    return Supervisor(args).run()


if __name__ == "__main__":
    sys.exit(main())
