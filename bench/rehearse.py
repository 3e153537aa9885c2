"""Stock-container rehearsal (`make rehearse`): the MME tarballs + the env tarball, run the way
SageMaker's stock Triton container runs them, with the capture store on S3 (a moto server).

    python -m bench.rehearse [--work-dir build/rehearse] [--rebuild-env] [--keep]

What is "stock" about it:
* tritonserver (the bundled 2.51 binary, explicit model control) gets a container-like
  environment: system PATH, no VIRTUAL_ENV/PYTHONPATH, SageMaker's variables, AWS credentials
  of the "endpoint role", cwd outside this checkout. The Python stub therefore sees the
  interpreter's standard library plus only what the env tarball (EXECUTION_ENV_PATH, shipped
  inside each model tarball) and the model tarball (serving/ + monitoring/ code packages)
  bring: not this repo's venv, not its .pth. Checked, not assumed: no stub or sidecar process
  may map a file from this venv's site-packages (the tritonserver binary's own libraries
  excepted) or run with its cwd in this checkout.
* The MME load/unload path is deploy.mme (the local SageMaker MME), attached to that server.
* Nothing starts the sidecar but the models (serving/runtime/host_services.py); settings come from the
  container environment (CAPTURE_STORE, CAPTURE_S3_ENDPOINT_URL) as a SageMaker Model's
  `Environment` would set them.

Then: traffic to every model, a caller without the control key refused (a load that brings
its own model.py, an unload; docs/security.md), unload + reload of the model whose process started the sidecar
(the sidecar must survive it), the watch phases (below), a graceful stop, and the check: every
successful request has exactly one record in the S3 store, with its embedding.

Watch phases (docs/watch.md; ``--watch-window 0`` skips them): a baseline of resnet_classifier
built from its records in the S3 store, then a clean phase and a darkened phase, each inside one
window (``MONITORING_WATCH_EVERY``, shortened to ``--watch-window`` seconds). Nobody runs a
command: the sidecar's watch loop scores both windows and publishes to CloudWatch (moto). The
alarms `deploy create` would make are evaluated on the data points moto returns (moto never
moves an alarm): the drift alarm must stay quiet on the clean window and fire on the darkened one. Prints a summary; exit status 1 on any
shortfall. The env tarball is cached under the work dir, keyed on the lock and the Python.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import numpy as np
from botocore.config import Config
from moto.server import ThreadedMotoServer
from PIL import Image

from deploy.mme import MMEConfig, MMEEndpoint
from deploy.errors import DeployError
from deploy.package import package_repository
from deploy.weights import allow_test_weights, check_manifest_weights, require_deployable
from deploy.payload import build_request, parse_response
from serving import MODEL_NAMES
from serving.launch import demo_client
from serving.runtime import host_services
from serving.common import procfs
from bench.loadtest.loss import match_ids
from serving.launch.server import ROOT, TritonProcess, free_port, pytriton_dir
from serving.runtime.triton_http import CONTROL_HEADER, TritonHTTP, error_text

# What the stub (serving runtimes + capture) and the sidecar import: env/model-requirements.txt.
ENV_DISTRIBUTIONS = ("torch", "diffusers", "transformers", "accelerate", "safetensors", "pillow", "numpy",
                     "pyarrow", "boto3", "prometheus_client", "pandas", "scipy", "scikit-learn")
STOCK_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUCKET, STORE_PREFIX = "rehearsal-capture", "capture"
WATCH_MODEL, WATCH_NAMESPACE, WATCH_ENDPOINT = "resnet_classifier", "ModelMonitoring/rehearsal", "rehearsal"


def log(msg: str) -> None:
    print(f"[rehearse] {msg}", flush=True)


# -- artefacts ----------------------------------------------------------------------------------
def env_key() -> str:
    h = hashlib.sha256()
    for path in (ROOT / "env" / "requirements.lock", ROOT / "env" / "model-requirements.txt", ROOT / "env" / "build_env.py"):
        h.update(path.read_bytes())
    h.update(f"{sys.version_info[:2]} {ENV_DISTRIBUTIONS}".encode())
    return h.hexdigest()[:16]


def env_tarball(work: Path, rebuild: bool = False) -> tuple[Path, float]:
    """The execution env (third-party packages only; the code ships in the model tarballs),
    built offline from this venv's installed distributions and cached by `env_key()`."""
    out = work / f"python_env-{env_key()}.tar.gz"
    if out.is_file() and not rebuild:
        return out, 0.0
    for old in work.glob("python_env-*.tar.gz"):
        old.unlink()
    t0 = time.monotonic()
    cmd = [sys.executable, str(ROOT / "env" / "build_env.py"), "--method", "pip", "--triton-version", "local",
           "--no-pip", "--no-package", "--out", str(out), "--work-dir", str(work / "env-work")]
    for dist in ENV_DISTRIBUTIONS:
        cmd += ["--from-installed", dist]
    if subprocess.run(cmd).returncode != 0:
        raise SystemExit("building the env tarball failed")
    shutil.rmtree(work / "env-work", ignore_errors=True)
    return out, time.monotonic() - t0


def stock_environ(home: Path, s3_url: str, extra: dict[str, str]) -> dict[str, str]:
    """The environment SageMaker's Triton container gives tritonserver for an MME endpoint."""
    libs = pytriton_dir().parent.parent / "nvidia_pytriton.libs"  # the "container's" own libraries
    env = {
        "PATH": STOCK_PATH, "HOME": str(home), "LANG": "C.UTF-8", "TMPDIR": str(home / "tmp"),
        "LD_LIBRARY_PATH": os.pathsep.join(p for p in (sysconfig.get_config_var("LIBDIR") or "", str(libs)) if p),
        "SAGEMAKER_MULTI_MODEL": "true", "SAGEMAKER_BIND_TO_PORT": "8080",
        "SAGEMAKER_SAFE_PORT_RANGE": "23000-23999", "SAGEMAKER_TRITON_DEFAULT_MODEL_NAME": "",
        # The endpoint role's credentials (moto accepts any) and the capture settings an
        # operator puts in the SageMaker Model's Environment.
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(home / "no-aws-config"), "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
        "CAPTURE_STORE": f"s3://{BUCKET}/{STORE_PREFIX}", "CAPTURE_S3_ENDPOINT_URL": s3_url,
        "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
    }
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    env.update(extra)
    return env


# -- traffic ------------------------------------------------------------------------------------
def _png(size: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    grad = np.linspace(0, 255, size)[None, :, None] * np.ones((size, 1, 3))
    pixels = np.clip(0.6 * grad + rng.normal(60, 40, (size, size, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def darken(png: bytes, factor: float = 0.3) -> bytes:
    """The image at ``factor`` of its brightness: the shift the watch phases must catch."""
    px = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), np.float32) * factor
    buf = io.BytesIO()
    Image.fromarray(px.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def payload(model: str, i: int, dark: bool = False) -> tuple[bytes, str]:
    """One small, valid request for `model` (SageMaker binary+json body)."""
    gen = json.dumps({"num_inference_steps": 2, "seed": i}).encode()
    if model == "resnet_classifier":
        return build_request({"image": [darken(_png(32, i)) if dark else _png(32, i)]}, binary=True)
    inputs = {"prompt": [f"a house, take {i}".encode()], "image": [_png(48 if model == "sd_upscale" else 64, i)],
              "gen_args": [gen]}
    if model == "sd_inpaint":
        inputs["mask_image"] = [demo_client.center_mask(64)]
    return build_request(inputs, binary=True)


@dataclass
class Tally:
    ok: dict[str, list[str]] = field(default_factory=dict)  # triton model name -> request ids
    failed: list[str] = field(default_factory=list)

    def invoke(self, runtime, target: str, model: str, i: int, dark: bool = False) -> None:
        body, ctype = payload(model, i, dark)
        try:
            r = runtime.invoke_endpoint(EndpointName="rehearsal", TargetModel=target, ContentType=ctype, Body=body)
            out = parse_response(r["Body"].read(), r["ContentType"])
            self.ok.setdefault(model, []).append(out["request_id"][0, 0].decode())
        except Exception as exc:  # noqa: BLE001 - every failure is reported in the summary
            self.failed.append(f"{target} #{i}: {type(exc).__name__}: {exc}")


# -- the stock-container checks -----------------------------------------------------------------
def processes_under(root_pid: int) -> list[int]:
    """root_pid and every descendant (stubs; the sidecar is detached but still a stub's child)."""
    return procfs.descendants(root_pid)


def extracted_envs(pids: list[int]) -> set[Path]:
    """The directories the Python backend unpacked EXECUTION_ENV_PATH tarballs into, as mapped
    by our processes (it uses /tmp/python_env_XXXXXX and removes them when it exits cleanly)."""
    found = set()
    for pid in pids:
        for path in procfs.mapped_paths(pid) or ():
            if path.startswith("/tmp/python_env_"):
                found.add(Path("/tmp") / path.split("/")[2])
    return found


def leaks(pids: list[int]) -> list[str]:
    """Files of this venv's site-packages (other than the tritonserver wheel's own binaries)
    mapped by the given processes, and processes whose cwd is in this checkout."""
    site = sysconfig.get_paths()["purelib"]
    allowed = (os.path.join(site, "pytriton"), os.path.join(site, "nvidia_pytriton.libs"))
    found = set()
    for pid in pids:
        paths, cwd = procfs.mapped_paths(pid), procfs.cwd(pid)
        if paths is None or cwd is None:
            continue
        if cwd == str(ROOT) or cwd.startswith(str(ROOT) + os.sep):
            found.add(f"pid {pid}: cwd {cwd}")
        for path in paths:
            if path.startswith(site) and not path.startswith(allowed):
                found.add(f"pid {pid}: {path}")
    return sorted(found)


def override_load_body(code: str) -> bytes:
    """A repository-API load that brings its own model.py (what an intruder would send)."""
    import base64

    config = {"backend": "python", "max_batch_size": 0,
              "input": [{"name": "X", "data_type": "TYPE_FP32", "dims": [1]}],
              "output": [{"name": "Y", "data_type": "TYPE_FP32", "dims": [1]}]}
    return json.dumps({"parameters": {"config": json.dumps(config),
                                      "file:1/model.py": base64.b64encode(code.encode()).decode()}}).encode()


def marker_model(marker: Path) -> str:
    """A model.py whose import creates `marker`: if the file exists, the code ran."""
    return (f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n\n"
            "class TritonPythonModel:\n    def execute(self, requests):\n        return []\n")


def control_plane_problems(url: str, loaded: str | None, marker: Path) -> list[str]:
    """What a caller without the control key gets (docs/security.md): a load carrying its own
    model.py and an unload of a served model must both be refused, naming the missing header;
    the override's code must not run and the model (None: none loaded) must stay ready."""
    anon = TritonHTTP(url, key="")
    problems = []
    for what, path, body in (("load with a model.py override", "/v2/repository/models/control_probe/load",
                              override_load_body(marker_model(marker))),
                             (f"unload of {loaded or 'a model'}", f"/v2/repository/models/{loaded or 'any'}/unload", b"{}")):
        status, _, out = anon.request("POST", path, body, timeout=60)
        if status != 403 or CONTROL_HEADER not in error_text(out):
            problems.append(f"unauthenticated {what}: HTTP {status} {error_text(out)[:200]!r} (expected 403 naming "
                            f"{CONTROL_HEADER})")
    if marker.exists():
        problems.append(f"the override's model.py ran: {marker} exists")
    if loaded and not anon.ready(loaded):
        problems.append(f"{loaded} is not ready after the unauthenticated unload")
    return problems


def read_store(s3_url: str) -> dict[str, list[dict]]:
    from monitoring.ingest.store import read_records_df

    out = {}
    for model in MODEL_NAMES:
        try:
            # dedup=False: a duplicated record must be seen to be reported (check()).
            df = read_records_df(f"s3://{BUCKET}/{STORE_PREFIX}", model, dedup=False, s3_endpoint_url=s3_url)
        except (FileNotFoundError, ValueError):
            out[model] = []
            continue
        out[model] = [{"request_id": r, "dim": 0 if e is None else len(e)}
                      for r, e in zip(df["request_id"], df["embedding"])]
    return out


def check(tally: Tally, stored: dict[str, list[dict]]) -> list[str]:
    """Every successful request: exactly one record, with an embedding."""
    problems = [f"request failed: {f}" for f in tally.failed]
    for model in MODEL_NAMES:
        sent = tally.ok.get(model, [])
        if not sent:
            problems.append(f"{model}: no successful request")
        recs = stored.get(model, [])
        match = match_ids(sent, [rec["request_id"] for rec in recs])
        empty = sorted({rec["request_id"] for rec in recs if rec["dim"] == 0} & set(sent))
        for what, ids in (("missing", match.missing), ("more than one record", list(match.duplicated)),
                          ("no embedding", empty)):
            if ids:
                problems.append(f"{model}: {len(ids)} of {len(sent)} requests with {what}: {ids[:3]}")
        if match.unexpected:  # a record that no answered request made
            problems.append(f"{model}: {len(match.unexpected)} records of request ids never answered: "
                            f"{match.unexpected[:3]}")
    return problems


def watch_environ(s3_url: str, window_s: int) -> dict[str, str]:
    """The container settings `deploy create` gives the watch loop, with a short window."""
    return {"MONITORING_WATCH_EVERY": f"{window_s}s", "MONITORING_WATCH_INTERVAL_S": "2",
            "MONITORING_CLOUDWATCH_NAMESPACE": WATCH_NAMESPACE, "AWS_ENDPOINT_URL_CLOUDWATCH": s3_url}


def _wait(pred, timeout_s: float, every_s: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(every_s)
    return bool(pred())


def _stored_ids(s3_url: str, model: str) -> set[str]:
    from monitoring.ingest.store import read_records

    try:
        table = read_records(f"s3://{BUCKET}/{STORE_PREFIX}", model, columns=["request_id"], s3_endpoint_url=s3_url)
    except (FileNotFoundError, ValueError):
        return set()
    return set(table["request_id"].to_pylist())


def _window_phase(tally: Tally, runtime, window_ms: int, n: int, first: int, dark: bool) -> tuple[int, list[str]]:
    """Wait for the next window boundary, send ``n`` requests inside that window; (start ms, problems)."""
    now = int(time.time() * 1000)
    start = (now // window_ms + 1) * window_ms
    time.sleep((start - now) / 1000 + 0.5)
    for i in range(first, first + n):
        tally.invoke(runtime, f"{WATCH_MODEL}.tar.gz", WATCH_MODEL, i, dark=dark)
    if int(time.time() * 1000) >= start + window_ms:
        return start, [f"watch: the {'darkened' if dark else 'clean'} phase overran its {window_ms // 1000} s window"]
    return start, []


def watch_phases(tally: Tally, runtime, s3_url: str, window_s: int, n: int) -> tuple[list[str], list[str]]:
    """Baseline, clean window, darkened window; the sidecar scores both by itself. (problems, summary lines)."""
    from deploy import alarms
    from monitoring.cli import main as monitoring_main
    from monitoring.ingest.store.backend import open_backend
    from monitoring.analysis.watch import ledger

    store = f"s3://{BUCKET}/{STORE_PREFIX}"
    window_ms = window_s * 1000
    first = len(tally.ok.get(WATCH_MODEL, []))
    since = int(time.time() * 1000)
    for i in range(n * 2):  # the baseline traffic
        tally.invoke(runtime, f"{WATCH_MODEL}.tar.gz", WATCH_MODEL, 10_000 + i)
    baseline_ids = set(tally.ok.get(WATCH_MODEL, [])[first:])  # wait for these ids, not for a total
    if not baseline_ids or not _wait(lambda: baseline_ids <= _stored_ids(s3_url, WATCH_MODEL), 120):
        return [f"watch: baseline records of {WATCH_MODEL} did not reach the store within 120 s"], []
    rc = monitoring_main(["baseline", "build", "--model", WATCH_MODEL, "--from", "records", "--store", store,
                          "--s3-endpoint-url", s3_url, "--since", str(since)])
    if rc != 0:
        return [f"watch: building the baseline failed (exit {rc})"], []
    clean, problems = _window_phase(tally, runtime, window_ms, n, 20_000, dark=False)
    dark, more = _window_phase(tally, runtime, window_ms, n, 30_000, dark=True)
    problems += more
    backend = open_backend(store, s3_url)
    scored = lambda: {s.start_ms for s in ledger.scored_states(backend, WATCH_MODEL)}  # noqa: E731
    if not _wait(lambda: {clean, dark} <= scored(), window_s + 180, 2.0):
        return problems + [f"watch: the sidecar did not score both windows within {window_s + 180} s of the last one "
                           f"closing (scored: {sorted(scored())})"], []
    cw = boto3.client("cloudwatch", endpoint_url=s3_url, region_name="us-east-1")
    alarms.create(cw, WATCH_ENDPOINT, WATCH_NAMESPACE, window_s, "us-east-1", log=lambda _m: None)
    states = alarms.evaluate_created(cw, WATCH_ENDPOINT, clean, dark + window_ms)
    drift = states.get("drift-critical", {})
    if drift.get(clean) != "OK":
        problems.append(f"watch: drift alarm on the clean window: {drift.get(clean)} (want OK)")
    if drift.get(dark) != "ALARM":
        problems.append(f"watch: drift alarm on the darkened window: {drift.get(dark)} (want ALARM)")
    summary = [f"watch: clean and darkened windows of {window_s} s scored by the sidecar by itself; alarms evaluated on moto's data:"]
    for name, per in sorted(states.items()):
        if clean in per and dark in per:
            summary.append(f"  {name}: clean window {per[clean]}, darkened window {per[dark]}")
        else:  # another period (capture-dropping: 5 min)
            summary.append(f"  {name}: {', '.join(sorted(set(per.values()))) or 'no periods'} over the phases")
    return problems, summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.rehearse", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work-dir", type=Path, default=ROOT / "build" / "rehearse")
    p.add_argument("--rebuild-env", action="store_true", help="rebuild the cached env tarball")
    p.add_argument("--requests", type=int, default=3, help="requests per model per round (default 3)")
    p.add_argument("--keep", action="store_true", help="keep the run directory (logs, repository) afterwards")
    p.add_argument("--watch-window", type=int, default=120, metavar="S",
                   help="window of the watch phases in seconds (MONITORING_WATCH_EVERY; 0 skips them; default 120)")
    p.add_argument("--watch-requests", type=int, default=60, metavar="N", help="requests per watch phase (baseline: 2N)")
    args = p.parse_args(argv)
    # This process reads the store back from moto: fake credentials, nothing from ~/.aws.
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
                       "AWS_SHARED_CREDENTIALS_FILE": os.devnull}.items():
        os.environ[key] = value
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t_all = time.monotonic()

    env_tar, timings["env build"] = env_tarball(work, args.rebuild_env)
    log(f"env tarball {env_tar.name} ({env_tar.stat().st_size / 2**20:.0f} MiB)"
        + (f", built in {timings['env build']:.0f} s" if timings["env build"] else ", cached"))
    run = Path(tempfile.mkdtemp(prefix="rehearse-"))  # outside the checkout: the stub's cwd is on its sys.path
    dist = run / "dist"
    t0 = time.monotonic()
    manifest = package_repository(ROOT / "model_repository", dist, env_tarball=env_tar,
                                  code_packages=[ROOT / "serving", ROOT / "monitoring"], compresslevel=1)
    timings["packaging"] = time.monotonic() - t0
    log(f"packaged {len(MODEL_NAMES)} model tarballs in {timings['packaging']:.0f} s")
    # The rehearsal runs the tiny test weights: it opts in (DEPLOY_ALLOW_TEST_WEIGHTS=1, set by
    # `make rehearse`) like any test; without it, the same refusal as `deploy check`.
    require_deployable(manifest, allow_test=allow_test_weights())
    for model, (origin, _) in check_manifest_weights(manifest, allow_test=True).items():
        log(f"weights {model}: {origin}")

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request access log
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port())
    moto.start()
    s3_url = "http://%s:%d" % moto.get_host_and_port()
    problems: list[str] = []
    tally = Tally()
    stats: dict = {"loads": {}}
    watch_summary: list[str] = []
    stored: dict[str, list[dict]] = {}
    server = endpoint = None
    env_dirs: set[Path] = set()
    sidecar = host_services.HostService("sidecar", (), str(run / "container" / "spool" / host_services.SIDECAR_LOCK))
    try:
        boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1", aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket=BUCKET)
        home = run / "container"
        environ = stock_environ(home, s3_url, {"HOST_SERVICES_CHECK_S": "1",
                                               "HOST_SERVICES_DIR": str(home / "host-services"),
                                               "CAPTURE_SPOOL_DIR": str(home / "spool"),
                                               "CAPTURE_SIDECAR_METRICS_PORT": str(free_port()),
                                               **(watch_environ(s3_url, args.watch_window) if args.watch_window else
                                                  {"MONITORING_WATCH": "0"})})
        work_dir = run / "mme"
        server = TritonProcess(repo=work_dir / "repository", http_port=free_port(), grpc_port=free_port(),
                               metrics_port=free_port(), log_path=run / "tritonserver.log", explicit=True,
                               environ=environ, cwd=home)
        (work_dir / "repository").mkdir(parents=True)
        server.start(wait_s=120)
        endpoint = MMEEndpoint(MMEConfig(model_data_url=str(dist), port=0, work_dir=work_dir, footprint="disk",
                                         triton_url=server.http_url, triton_control_key=server.control_key,
                                         load_timeout_s=900)).start()
        runtime = boto3.client("sagemaker-runtime", endpoint_url=endpoint.url, region_name="us-east-1",
                               aws_access_key_id="x", aws_secret_access_key="x",
                               config=Config(retries={"max_attempts": 1}, read_timeout=900))
        t0 = time.monotonic()
        first_model = "resnet_classifier"
        order = [first_model] + [m for m in MODEL_NAMES if m != first_model]
        for model in order:  # first request of each model is its cold start (env + model load)
            tally.invoke(runtime, f"{model}.tar.gz", model, 0)
            if model == first_model:
                sidecar_pid = host_services.holder_pid(sidecar) if host_services.wait_running(sidecar, 30) else None
                if sidecar_pid is None:
                    problems.append("no sidecar running after the first model loaded")
                else:
                    log(f"sidecar pid {sidecar_pid} started by {model}'s stub; code from "
                        f"{_environ_of(sidecar_pid).get('PYTHONPATH', '?')}, pyarrow from {_mapped(sidecar_pid, 'pyarrow')}")
        timings["cold loads"] = time.monotonic() - t0
        problems += control_plane_problems(server.http_url, first_model, run / "control-probe-ran")
        for model in order:
            for i in range(1, args.requests):
                tally.invoke(runtime, f"{model}.tar.gz", model, i)
        pids = processes_under(server.proc.pid) + [p for p in [host_services.holder_pid(sidecar)] if p]
        env_dirs = extracted_envs(pids)
        leaked = leaks(pids)
        problems += [f"stub sees this checkout's venv/cwd: {x}" for x in leaked[:10]]
        # The model whose process started the sidecar goes away; the sidecar must not.
        t0 = time.monotonic()
        status = endpoint_request("DELETE", f"{endpoint.url}/models/{first_model}.tar.gz")
        if status != 200:
            problems.append(f"unloading {first_model}: HTTP {status}")
        if host_services.holder_pid(sidecar) != sidecar_pid or not host_services.running(sidecar):
            problems.append("the sidecar did not survive the unload of the model that started it")
        for i in range(args.requests, 2 * args.requests):  # reloads it
            tally.invoke(runtime, f"{first_model}.tar.gz", first_model, i)
        timings["unload + reload"] = time.monotonic() - t0
        stats = json.loads(urllib.request.urlopen(f"{endpoint.url}/mme/stats", timeout=30).read())
        if args.watch_window:
            t0 = time.monotonic()
            more, watch_summary = watch_phases(tally, runtime, s3_url, args.watch_window, args.watch_requests)
            problems += more
            timings["watch phases"] = time.monotonic() - t0
    except Exception as exc:  # noqa: BLE001 - still stop everything, check what arrived, report
        problems.append(f"rehearsal aborted: {type(exc).__name__}: {exc}")
    finally:
        t0 = time.monotonic()
        if endpoint is not None:
            endpoint.stop()  # attached: unloads every model (their capture queues flush to the spool)
        if server is not None:
            # Generous: on exit the Python backend deletes every extracted env (5 x 1.2 GB here).
            code = server.stop(timeout=600)  # the sidecar sees tritonserver gone, drains the spool, exits
            if code != 0:
                problems.append(f"tritonserver exited with {code}")
            for leftover in (d for d in env_dirs if d.exists()):
                log(f"removing {leftover}, left behind by tritonserver")
                shutil.rmtree(leftover, ignore_errors=True)
            if not host_services.wait_stopped(sidecar, timeout=180):
                problems.append("the sidecar did not drain and exit within 180 s of tritonserver stopping")
        timings["graceful stop + drain"] = time.monotonic() - t0
        try:
            stored = read_store(s3_url)
        except Exception as exc:  # noqa: BLE001 - a shortfall to report, not a crash
            problems.append(f"reading the S3 store failed: {type(exc).__name__}: {exc}")
        finally:
            moto.stop()
    shutil.rmtree(dist, ignore_errors=True)  # 1.5 GB of tarballs; logs stay on failure
    problems += check(tally, stored)
    timings["total"] = time.monotonic() - t_all
    sent = sum(len(v) for v in tally.ok.values())
    kept = sum(len(v) for v in stored.values())
    print("\nstock-container rehearsal")
    for model in MODEL_NAMES:
        print(f"  {model:18s} requests ok {len(tally.ok.get(model, [])):3d}   records in s3 {len(stored.get(model, [])):3d}"
              f"   loads {stats['loads'].get(f'{model}.tar.gz', 0)}")
    print(f"  total: {sent} successful requests, {kept} records in s3://{BUCKET}/{STORE_PREFIX}")
    for line in watch_summary:
        print(f"  {line}")
    print("  seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    if problems:
        print(f"FAILED ({len(problems)} problems); logs in {run}:")
        for problem in problems:
            print(f"  - {problem}")
        return 1
    print("OK: every successful request has exactly one record with its embedding in the S3 store")
    if not args.keep:
        shutil.rmtree(run, ignore_errors=True)
    return 0


def _mapped(pid: int, package: str) -> str:
    """Where a process loaded `package`'s shared libraries from (the env, not this venv)."""
    for path in procfs.mapped_paths(pid) or ():
        if f"/{package}/" in path:
            return path.split(f"/{package}/")[0]
    return "?"


def _environ_of(pid: int) -> dict[str, str]:
    return procfs.environ(pid)


def endpoint_request(method: str, url: str) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=600) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


if __name__ == "__main__":
    try:
        sys.exit(main())
    except DeployError as exc:  # e.g. test weights without DEPLOY_ALLOW_TEST_WEIGHTS=1
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
