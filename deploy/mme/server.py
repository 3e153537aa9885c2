"""HTTP routing of the local MME and `MMEEndpoint`, which owns the server, the cache and Triton.

Routes (one port):
  POST /endpoints/<name>/invocations   sagemaker-runtime InvokeEndpoint (X-Amzn-SageMaker-Target-Model)
  POST /invocations                    the same, as a container sees it
  GET  /ping                           200 while tritonserver is live and every loaded model ready, all stubs alive
  GET  /models                         {"models": [{"modelName", "modelUrl", "tritonName"}]}
  POST /models                         {"model_name", "url"} -> 200 / 409 loaded / 507 no memory / 400
  GET  /models/<n>                     200 / 404
  DELETE /models/<n>                   200 / 404
  POST /models/<n>/invoke              Triton's answer, status included / 404 if not loaded
  GET  /mme/stats                      (local extension) loads, unloads, evictions, footprints, cold starts
  GET  /metrics                        (local extension) the same per model, Prometheus text (deploy/mme/metrics.py)

Bodies: `application/vnd.sagemaker-triton.binary+json;json-header-size=N` is forwarded to
Triton with `Inference-Header-Content-Length: N` and the reverse on the way back; anything
else is forwarded as JSON, like Triton's SageMaker front end.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from deploy.mme.cache import ModelCache, ModelRecord
from deploy.mme.config import MMEConfig
from deploy.mme.errors import BadRequest, MMEError, ModelError, ModelNotFound, Overloaded, TritonUnavailable
from deploy.mme.metrics import exposition, registry_for
from deploy.mme.source import ModelSource, check_target_model
from deploy.mme.triton import TritonControl, error_text
from deploy.payload import BINARY_CONTENT_TYPE, JSON_CONTENT_TYPE, PayloadError, header_size
from serving.runtime import host_services
from serving.runtime.deadline import HEADER as DEADLINE_HEADER  # forwarded to Triton, which hands it to the model

log = logging.getLogger(__name__)

TARGET_HEADER = "X-Amzn-SageMaker-Target-Model"
INFERENCE_ID_HEADER = "X-Amzn-SageMaker-Inference-Id"
# A refusal's Retry-After, seconds (HTTP allows whole seconds only): clients add jitter on top.
RETRY_AFTER_S = 1
_MODEL = re.compile(r"/models/([^/]+)")
_MODEL_INVOKE = re.compile(r"/models/([^/]+)/invoke")
_ENDPOINT = re.compile(r"/endpoints/([^/]+)/invocations")


def _check_port_free(port: int, host: str = "127.0.0.1") -> None:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            raise RuntimeError(f"port {port} on {host} is in use (another tritonserver?); "
                               "pick another or pass 0 for a free one") from None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    endpoint: "MMEEndpoint"  # set on the per-endpoint subclass
    server_version = "local-sagemaker-mme/1"

    def log_message(self, fmt: str, *args) -> None:  # quiet by default; `--verbose` logs it
        log.debug("%s %s", self.address_string(), fmt % args)

    # -- plumbing ----------------------------------------------------------------------------
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", content_type: str = JSON_CONTENT_TYPE,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, doc) -> None:
        self._send(status, json.dumps(doc).encode())

    def _container_error(self, exc: MMEError, status: int | None = None) -> None:
        self._send(status or exc.status, exc.container_body())

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        path = urlsplit(self.path).path
        body = self._body() if method == "POST" else b""
        ep = self.endpoint
        try:
            if path == "/ping" and method == "GET":
                # Unhealthy too while a loaded model is down: from the moment one of its stubs
                # dies (requests handed to that instance fail) until the watchdog,
                # serving/runtime/watchdog.py, has reloaded it: SageMaker then stops routing here.
                if ep.triton.live():
                    loaded = [r for r in ep.cache.loaded() if r.triton_name]
                    missing = ep.triton.stub_missing([r.triton_name for r in loaded])
                    down = [r.key for r in loaded if r.triton_name in missing or not ep.triton.ready(r.triton_name)]
                else:
                    down = ["tritonserver"]
                return self._json(503, {"status": "Unhealthy", "down": down}) if down \
                    else self._json(200, {"status": "Healthy"})
            if path == "/mme/stats" and method == "GET":
                return self._json(200, ep.cache.stats())
            if path == "/metrics" and method == "GET":
                return self._send(200, exposition(ep.metrics), "text/plain; version=0.0.4; charset=utf-8")
            if path == "/models":
                if method == "GET":
                    # tritonName: a local extension (SageMaker's container names the Triton model
                    # after modelName); the watchdog's SageMaker mode maps stubs to models with it.
                    return self._json(200, {"models": [{"modelName": r.key, "modelUrl": r.url, "tritonName": r.triton_name}
                                                       for r in ep.cache.loaded()]})
                if method == "POST":
                    return self._load_model(body)
            m = _MODEL_INVOKE.fullmatch(path)
            if m and method == "POST":
                return self._container_invoke(unquote(m.group(1)), body)
            m = _MODEL.fullmatch(path)
            if m:
                name = unquote(m.group(1))
                if method == "GET":
                    rec = ep.cache.get(name)
                    if rec is None:
                        raise ModelNotFound(f"model {name!r} is not loaded")
                    return self._json(200, {"modelName": rec.key, "modelUrl": rec.url})
                if method == "DELETE":
                    ep.cache.unload(name)
                    return self._json(200, {"modelName": name, "status": "unloaded"})
            m = _ENDPOINT.fullmatch(path)
            if m and method == "POST":
                return self._runtime_invoke(unquote(m.group(1)), body)
            if path == "/invocations" and method == "POST":
                return self._runtime_invoke(None, body)
            return self._json(404, {"error": f"no route for {method} {path}"})
        except MMEError as exc:
            return self._container_error(exc)
        except Exception as exc:  # noqa: BLE001 - answer, never drop the connection
            log.exception("internal error on %s %s", method, path)
            return self._json(500, {"error": f"internal error: {exc}"})

    # -- container contract ------------------------------------------------------------------
    def _load_model(self, body: bytes) -> None:
        try:
            doc = json.loads(body or b"{}")
            key, url = doc["model_name"], doc["url"]
            if not isinstance(key, str) or not isinstance(url, str) or not key or not url:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            return self._json(400, {"error": 'body must be {"model_name": "<name>", "url": "<path or s3 url>"}'})
        try:
            check_target_model(key)
            self.endpoint.source.check_load_url(url)
            self.endpoint.cache.register(key, url)
        except MMEError as exc:  # the contract knows 409 and 507; everything else is 400
            return self._container_error(exc, exc.status if exc.status in (409, 507) else 400)
        return self._json(200, {"modelName": key, "modelUrl": url})

    def _container_invoke(self, name: str, body: bytes) -> None:
        cache = self.endpoint.cache
        rec = cache.acquire(name, load=False)
        try:
            status, content_type, out = self.endpoint.forward(rec, body, self.headers.get("Content-Type"),
                                                              self.headers.get(INFERENCE_ID_HEADER), self.headers.get(DEADLINE_HEADER))
        finally:
            cache.release(rec)
        extra = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None  # a refusal: retry later
        self._send(status, out, content_type, extra)

    # -- sagemaker-runtime -------------------------------------------------------------------
    def _runtime_invoke(self, endpoint_name: str | None, body: bytes) -> None:
        ep = self.endpoint
        started = time.monotonic()
        try:
            if endpoint_name is not None and ep.config.endpoint_name and endpoint_name != ep.config.endpoint_name:
                raise BadRequest(f"Endpoint {endpoint_name} not found.")
            target = self.headers.get(TARGET_HEADER)
            if not target:
                raise BadRequest(f"this is a multi-model endpoint: set TargetModel ({TARGET_HEADER} header)")
            url = ep.source.url_for(target)
            rec = ep.cache.acquire(target, url=url)
            try:
                status, content_type, out = ep.forward(rec, body, self.headers.get("Content-Type"),
                                                       self.headers.get(INFERENCE_ID_HEADER), self.headers.get(DEADLINE_HEADER))
            finally:
                ep.cache.release(rec)
            if status == 503:
                raise ep.overloaded(rec, error_text(out))
            if status != 200:
                raise ModelError(status, error_text(out))
            ep.cache.note_response(rec, time.monotonic() - started)
            headers = {"x-Amzn-Invoked-Production-Variant": "AllTraffic"}
            self._send(200, out, content_type, headers)
        except MMEError as exc:
            status, headers, out = exc.runtime_response()
            self._send(status, out, JSON_CONTENT_TYPE, headers)
        except Exception as exc:  # noqa: BLE001
            log.exception("internal error invoking %s", self.headers.get(TARGET_HEADER))
            status, headers, out = MMEError(f"internal error: {exc}").runtime_response()
            self._send(status, out, JSON_CONTENT_TYPE, headers)


class _BurstServer(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5: a burst of callers (the overload case this
    # front answers with 503s) must reach accept() rather than wait on SYN retransmits.
    request_queue_size = 256


class MMEEndpoint:
    """The local endpoint: HTTP server + model cache + a tritonserver it starts (or attaches to)."""

    def __init__(self, config: MMEConfig) -> None:
        self.config = config
        self.work_dir = Path(config.work_dir).resolve()
        self.process = None  # serving.launch.server.TritonProcess when we started it
        self.triton: TritonControl | None = None
        self.cache: ModelCache | None = None
        self.source: ModelSource | None = None
        self.httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.metrics = None  # prometheus_client registry over the cache, once started
        self._queue_policies: dict[str, dict] = {}  # Triton model name -> its default_queue_policy
        self.refusals: dict[str, int] = {}  # TargetModel -> invocations refused with 503 (on /metrics)
        self._refusals_lock = threading.Lock()

    @property
    def url(self) -> str:
        assert self.httpd is not None, "not started"
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def repository(self) -> Path:
        return self.work_dir / "repository"

    def start(self) -> "MMEEndpoint":
        cfg = self.config
        for sub in ("repository", "staging", "downloads"):  # ours alone: start from a clean slate
            shutil.rmtree(self.work_dir / sub, ignore_errors=True)
            (self.work_dir / sub).mkdir(parents=True, exist_ok=True)
        if cfg.triton_url:
            self.triton = TritonControl(cfg.triton_url, self.repository, key=cfg.triton_control_key)
            if not self.triton.live():
                raise RuntimeError(f"no live tritonserver at {cfg.triton_url}")
        else:
            self._start_triton()
        self.source = ModelSource(cfg.model_data_url, self.work_dir / "downloads",
                                  s3_endpoint_url=cfg.s3_endpoint_url, region=cfg.s3_region,
                                  allowed_roots=tuple(cfg.allowed_model_roots))
        self.cache = ModelCache(self.triton, self.source, work_dir=self.work_dir, budget_bytes=cfg.budget_bytes,
                                footprint=cfg.footprint, max_bytes=int(cfg.max_model_mb * 2**20),
                                max_members=cfg.max_members, load_timeout=cfg.load_timeout_s)
        self.metrics = registry_for(self.cache, self.refusals)
        handler = type("MMEHandler", (_Handler,), {"endpoint": self})
        try:
            self.httpd = _BurstServer((cfg.host, cfg.port), handler)
        except OSError as exc:
            self.stop()
            raise RuntimeError(f"cannot listen on {cfg.host}:{cfg.port}: {exc}") from None
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="mme-http", daemon=True)
        self._thread.start()
        return self

    def _start_triton(self) -> None:
        from serving.launch.server import TritonProcess, free_port

        cfg = self.config
        ports = []
        for p in (cfg.triton_http_port, cfg.triton_grpc_port, cfg.triton_metrics_port):
            if p:
                _check_port_free(p)
            ports.append(p or free_port())
        self.process = TritonProcess(
            repo=self.repository, http_port=ports[0], grpc_port=ports[1], metrics_port=ports[2],
            log_path=self.work_dir / "log" / "tritonserver.log", explicit=True,
            extra_env={**self._capture_env(), **cfg.triton_env}, extra_args=tuple(cfg.triton_args))
        try:
            self.process.start(wait_s=cfg.triton_start_timeout_s)
        except BaseException:
            self.process.stop()
            raise
        # start() only polls the HTTP port: make sure it was our process that answered.
        if self.process.proc is None or self.process.proc.poll() is not None:
            raise RuntimeError(f"tritonserver exited; see {self.process.log_path}:\n{self.process.log_tail()}")
        self.triton = TritonControl(f"127.0.0.1:{ports[0]}", self.repository, key=self.process.control_key)

    def _capture_env(self) -> dict[str, str]:
        """Capture on (the models start the sidecar, as on SageMaker) when a store is configured."""
        from serving.launch.server import capture_env

        cfg = self.config
        if not cfg.capture_store:
            return {}
        return capture_env(Path(cfg.capture_spool), cfg.capture_store, cfg.sidecar_metrics_port,
                           sidecar_log=self.work_dir / "log" / "sidecar.log")

    def forward(self, rec: ModelRecord, body: bytes, content_type: str | None,
                inference_id: str | None, deadline: str | None = None) -> tuple[int, str, bytes]:
        """Send one inference body to Triton; return (status, SageMaker content type, body)."""
        try:
            size = header_size(content_type)
        except PayloadError as exc:
            raise BadRequest(str(exc)) from None
        headers = {"Content-Type": JSON_CONTENT_TYPE}
        if size is not None:
            if size > len(body):
                raise BadRequest(f"json-header-size={size} is larger than the {len(body)}-byte body")
            headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(size)}
        if inference_id:
            headers[INFERENCE_ID_HEADER] = inference_id
        if deadline:  # the caller's deadline, checked by the model (serving/runtime/deadline.py)
            headers[DEADLINE_HEADER] = deadline
        assert self.triton is not None and rec.triton_name
        status, resp_headers, out = self.triton.infer(rec.triton_name, body, headers, self.config.infer_timeout_s)
        length = resp_headers.get("inference-header-content-length")
        ctype = f"{BINARY_CONTENT_TYPE};json-header-size={length}" if length else JSON_CONTENT_TYPE
        return status, ctype, out

    def overloaded(self, rec: ModelRecord, triton_message: str) -> Overloaded:
        """The refusal a caller sees: which model, why, and the state of its queue."""
        with self._refusals_lock:  # request threads of the ThreadingHTTPServer
            self.refusals[rec.key] = self.refusals.get(rec.key, 0) + 1
        policy = self.queue_policy(rec.triton_name or rec.key)
        limit = (f"Triton queue limit {policy.get('max_queue_size', '?')}, queue timeout "
                 f"{int(policy.get('default_timeout_microseconds', 0)) / 1e6:g} s" if policy else "no queue policy")
        return Overloaded(f"model {rec.key} is overloaded and refused the request before running it "
                          f"({triton_message}); {rec.in_use} request(s) in flight through this endpoint, "
                          f"{limit}; retry after {RETRY_AFTER_S} s with backoff", RETRY_AFTER_S)

    def queue_policy(self, triton_name: str) -> dict:
        """The model's `default_queue_policy` as Triton loaded it (cached: it changes only on reload)."""
        if triton_name not in self._queue_policies:
            status, doc = 0, {}
            try:
                status, _, body = self.triton.request("GET", f"/v2/models/{triton_name}/config", timeout=5)
                doc = json.loads(body) if status == 200 else {}
            except (MMEError, ValueError):
                pass
            policy = (doc.get("dynamic_batching") or {}).get("default_queue_policy") or {}
            if status != 200:
                return policy  # not cached: ask again next time
            self._queue_policies[triton_name] = policy
        return self._queue_policies[triton_name]

    def serve_forever(self) -> None:
        assert self._thread is not None
        self._thread.join()

    def stop(self) -> int | None:
        """Stop serving and stop the tritonserver we started; return its exit code."""
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
        code = None
        if self.process is not None:
            code = self.process.stop()
            self.process = None
            if self.config.capture_store:  # the models' sidecar drains the spool once Triton is gone
                from serving.launch.server import sidecar_of

                sidecar = sidecar_of(Path(self.config.capture_spool))
                if not host_services.wait_stopped(sidecar, timeout=120.0):
                    log.warning("the capture sidecar is still draining %s", self.config.capture_spool)
        elif self.cache is not None and self.config.triton_url:
            try:
                self.cache.unload_all()  # leave an attached server as we found it
            except TritonUnavailable:
                pass
        return code
