"""The demo, step by step (see docs/demo.md for what it shows and how "weeks" are simulated)."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
MODEL = "resnet_classifier"
SD_MODELS = ("sd_img2img", "sd_depth")
WEEKS = (("week 1 (clean)", "clean"), ("week 2 (blurred)", "blurred"), ("week 3 (darkened)", "darkened"))
#: Concept shift (issue 23): clean images, but the world now names digits 0-4 as the next digit
#: (its labels moved, its inputs did not). Drift detectors and the label-free accuracy estimate
#: stay quiet by construction; only the posted actuals show the drop.
CONCEPT_WEEK = ("week 4 (relabelled)", "clean")


def relabel(label: int) -> int:
    """The concept-shift week's truth: 0->1, 1->2, ..., 4->5; 5-9 unchanged (about half the traffic)."""
    return label + 1 if label < 5 else label

log = logging.getLogger(__name__)


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.demo", description=__doc__)
    p.add_argument("--workdir", default=str(ROOT / "var" / "demo"), help="where the classifier, store, spool, logs and report go")
    p.add_argument("--per-week", type=int, default=300, help="classifier requests per simulated week (default 300)")
    p.add_argument("--sd-per-week", type=int, default=2, help="SD requests mixed into each week (default 2; 0 = no SD models)")
    p.add_argument("--epochs", type=int, default=5, help="training epochs (default 5)")
    p.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    p.add_argument("--blur-radius", type=float, default=3.0)
    p.add_argument("--darken", type=float, default=0.65, help="week 3 pixel scale factor (default 0.65)")
    p.add_argument("--concurrency", type=int, default=4, help="client threads replaying traffic (default 4)")
    p.add_argument("--reuse-model", action="store_true", help="keep an already trained classifier in <workdir>/classifier")
    p.add_argument("--http-port", type=int, default=0, help="0 = a free port")
    p.add_argument("--grpc-port", type=int, default=0)
    p.add_argument("--metrics-port", type=int, default=0)
    p.add_argument("--sidecar-metrics-port", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--instances", type=int, default=None, metavar="N",
                   help="instances per model instead of the configs' two (1 halves start-up on a small host)")
    p.add_argument("--json", action="store_true", help="print the per-week results as JSON at the end")
    p.add_argument("--no-concept-week", action="store_true",
                   help="leave out week 4 (clean inputs, relabelled truth: the estimate's documented blind spot)")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


@dataclass
class Phase:
    label: str
    kind: str
    start_ms: int = 0
    end_ms: int = 0
    sent: int = 0
    failed: int = 0
    relabelled: bool = False  # truth posted for this week goes through relabel() (concept shift)


class Progress:
    """One tqdm bar over the whole demo (weighted steps), or plain log lines without a TTY."""

    def __init__(self, total: int, disable: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="step", disable=disable, dynamic_ncols=True,
                        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]")
        self.lock = threading.Lock()

    def step(self, what: str | None = None, n: int = 0) -> None:
        with self.lock:
            if what:
                self.bar.set_description_str(what)
            if n:
                self.bar.update(n)

    def write(self, text: str) -> None:
        self.bar.write(text)

    def close(self) -> None:
        self.bar.close()


def ensure_sd_checkpoints(models: tuple[str, ...]) -> None:
    repo = ROOT / "model_repository"
    missing = [m for m in models if not (repo / m / "1" / "checkpoint" / "model_index.json").exists()]
    if missing:
        from serving.runtime.checkpoints.__main__ import main as ckpt_main

        ckpt_main(["tiny", "--repo", str(repo), "--models", *missing])


def start_sidecar(spool: Path, store: Path, port: int, log_path: Path) -> subprocess.Popen:
    import monitoring.capture.sidecar_command as sidecar_command
    from serving.launch.server import server_env

    argv = sidecar_command.argv({"CAPTURE_SPOOL_DIR": str(spool), "CAPTURE_STORE": str(store),
                                 "CAPTURE_SIDECAR_METRICS_PORT": str(port), "CAPTURE_COMPACT_EVERY_S": "0"})
    with open(log_path, "ab") as f:
        return subprocess.Popen(
            argv, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=server_env(), start_new_session=True)


def stop_process(proc: subprocess.Popen, timeout: float = 120.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # graceful: the sidecar drains the spool first
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def _wait_next_ms() -> int:
    """Now in ms, strictly after every earlier arrival (phases never share a millisecond)."""
    t0 = int(time.time() * 1000)
    while int(time.time() * 1000) <= t0:
        time.sleep(0.001)
    return int(time.time() * 1000)


def replay(phase: Phase, images: list, labels: np.ndarray, week: int, server: Any, sd_images: list, args, prog: Progress,
           truth: dict[str, str]) -> None:
    """Send one week's classifier requests (+ a few SD ones) with ``args.concurrency`` threads."""
    import tritonclient.grpc as tgrpc
    import tritonclient.http as thttp

    from bench.demo.data import corruption, png_bytes
    from serving.launch.client import build_inputs

    local = threading.local()
    corrupt = corruption(phase.kind, args.blur_radius, args.darken)

    def client(kind: str):
        c = getattr(local, kind, None)
        if c is None:
            c = thttp.InferenceServerClient(server.http_url) if kind == "http" else tgrpc.InferenceServerClient(server.grpc_url)
            setattr(local, kind, c)
        return c

    def send(job: tuple[str, int]) -> None:
        what, i = job
        try:
            if what == "clf":
                rid = f"w{week}-{i:04d}"
                proto = "grpc" if i % 4 == 3 else "http"  # both protocols carry the same capture
                tc = tgrpc if proto == "grpc" else thttp
                arr = build_inputs(MODEL, image=png_bytes(corrupt(images[i])))["image"]
                inp = tc.InferInput("image", list(arr.shape), "BYTES")
                inp.set_data_from_numpy(arr)
                res = client(proto).infer(MODEL, [inp], request_id=rid,
                                          outputs=[tc.InferRequestedOutput("label"), tc.InferRequestedOutput("request_id")])
                returned = res.as_numpy("request_id")[0][0].decode()
                truth[returned] = str(relabel(int(labels[i])) if phase.relabelled else int(labels[i]))
            else:
                model = SD_MODELS[i % len(SD_MODELS)]
                inputs = build_inputs(model, prompt="a photo of a handwritten digit", image=sd_images[i % len(sd_images)],
                                      gen_args={"num_inference_steps": 2, "seed": i})
                tensors = []
                for name, arr in inputs.items():
                    t = tgrpc.InferInput(name, list(arr.shape), "BYTES")
                    t.set_data_from_numpy(arr)
                    tensors.append(t)
                client("grpc").infer(model, tensors, request_id=f"w{week}-sd-{i}",
                                     outputs=[tgrpc.InferRequestedOutput("generated_image")])
            phase.sent += 1
        except Exception as e:  # count and go on: a failed request is part of real traffic
            phase.failed += 1
            log.warning("request %s %d failed: %s", what, i, e)
        if what == "clf":
            prog.step(n=1)

    jobs: list[tuple[str, int]] = [("clf", i) for i in range(len(images))]
    for k in range(args.sd_per_week):  # spread the SD requests through the week
        jobs.insert(int((k + 0.5) * len(jobs) / max(args.sd_per_week, 1)), ("sd", k))
    phase.start_ms = _wait_next_ms()
    with ThreadPoolExecutor(max_workers=max(1, args.concurrency)) as ex:
        list(ex.map(send, jobs))
    phase.end_ms = _wait_next_ms()


def per_week_table(run: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    rows = []
    for w in run["windows"]:
        m = w.get("methods", {})
        rows.append({
            "week": w["label"], "n": w["n"],
            "jsd": m.get("cluster_jsd", {}).get("statistic"), "jsd_drift": m.get("cluster_jsd", {}).get("is_drift"),
            "centroid": m.get("centroid", {}).get("statistic"), "centroid_drift": m.get("centroid", {}).get("is_drift"),
            "mmd_p": m.get("mmd", {}).get("p_value"), "mmd_drift": m.get("mmd", {}).get("is_drift"),
            "auc": m.get("domain_classifier", {}).get("statistic"), "auc_drift": m.get("domain_classifier", {}).get("is_drift"),
            "accuracy": w.get("accuracy"), "estimated_accuracy": w.get("estimated_accuracy"),
            "estimate_low": (w.get("accuracy_estimate") or {}).get("low"),
            "estimate_high": (w.get("accuracy_estimate") or {}).get("high"), "top_field": w.get("explanation", {}).get("top_field"),
            "drifted": w.get("drifted", []), "any_drift": w.get("any_drift", False),
        })

    def f(x, spec, flag=None):
        if x is None:
            return "-"
        return format(x, spec) + ("*" if flag else " " if flag is not None else "")

    head = f"{'week':<20} {'n':>4} {'JSD':>8} {'centroid':>9} {'MMD p':>7} {'AUC':>7} {'accuracy':>8} {'estimated':>9}  {'inputs moved':<12} verdict"
    lines = [head, "-" * len(head)]
    for r in rows:
        verdict = "DRIFT (" + ", ".join(r["drifted"]) + ")" if r["any_drift"] else "no drift"
        lines.append(f"{r['week']:<20} {r['n']:>4} {f(r['jsd'], '.3f', r['jsd_drift']):>8} {f(r['centroid'], '.2f', r['centroid_drift']):>9} "
                     f"{f(r['mmd_p'], '.3f', r['mmd_drift']):>7} {f(r['auc'], '.3f', r['auc_drift']):>7} {f(r['accuracy'], '.2f'):>8} {f(r['estimated_accuracy'], '.2f'):>9}  "
                     f"{(r['top_field'] if 'metadata' in r['drifted'] else '-') or '-':<12} {verdict}")
    lines.append("* = drift at alpha 0.01 (threshold calibrated to the window size); MMD p: p-value of the MMD test")
    lines.append("estimated = label-free accuracy from calibrated confidences (CBPE); it assumes the labels' meaning did not "
                 "move, so a relabelled week (concept shift) keeps a high estimate while its accuracy falls")
    return "\n".join(lines), rows


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import warnings

    warnings.filterwarnings("ignore")
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except Exception:
        pass

    from monitoring.analysis.actuals.labels import save_actuals
    from monitoring.analysis.alerts.prometheus import export_scores
    from monitoring.analysis.baseline.sources import embed_images
    from monitoring.analysis.baseline.store import save_baseline
    from bench.demo.data import load_split, png_bytes
    from bench.demo.train import train_classifier
    from monitoring.outputs.report.build import build_report
    from monitoring.analysis.scoring.runner import save_scores, score_model
    from monitoring.analysis.scoring.windows import Window
    from serving.launch.server import TritonProcess, free_port

    t_start = time.perf_counter()
    work = Path(args.workdir).resolve()
    clf_dir, store, spool, logs, report_dir = (work / "classifier", work / "store", work / "spool", work / "logs", work / "report")
    for d in (store, spool, report_dir):  # a fresh run: only this demo's own directories
        shutil.rmtree(d, ignore_errors=True)
    logs.mkdir(parents=True, exist_ok=True)
    sd_models = SD_MODELS if args.sd_per_week > 0 else ()
    epoch_w = max(1, args.per_week // 6)  # rough weights so the bar's ETA means something
    total = args.epochs * epoch_w + 10 + 3 * args.per_week + 10 + 10 + 10
    prog = Progress(total, args.no_progress)
    try:
        prog.step("loading digits")
        # 900 to train, 450 for the baseline (never trained on), 447 to serve.
        split = load_split(args.size, n_train=900, n_reference=450)
        rng = np.random.default_rng(args.seed)
        # 1. train
        trained = (clf_dir / "model.safetensors").exists() and args.reuse_model
        if trained:
            info = json.loads((clf_dir / "training.json").read_text())
            prog.step("reusing classifier", args.epochs * epoch_w)
        else:
            prog.step(f"training ResNet ({args.epochs} epochs)")
            info = train_classifier(split.train_images, split.train_labels, clf_dir, size=args.size, epochs=args.epochs,
                                    seed=args.seed, eval_images=split.holdout_images, eval_labels=split.holdout_labels,
                                    progress=lambda e: prog.step(n=epoch_w))
        prog.write(f"classifier: {info['n_train']} training digits, hold-out accuracy {info.get('holdout_accuracy', float('nan')):.3f} "
                   f"({info.get('seconds', '?')} s) -> {clf_dir}")
        # 2. baseline: reference digits the model was not trained on, through the serving runtime
        prog.step("baseline from reference images")
        X, meta, source = embed_images([png_bytes(im) for im in split.reference_images], MODEL, str(clf_dir))
        meta["label"] = [str(int(v)) for v in split.reference_labels]
        b = save_baseline(store, MODEL, X, meta, embedding_source=source,
                          source={"kind": "images", "what": "demo reference digits (not trained on)", "checkpoint_dir": str(clf_dir)})
        prog.step(n=10)
        # 3. serve: sidecar + Triton with capture on
        prog.step("starting sidecar + Triton")
        ensure_sd_checkpoints(sd_models)
        spool.mkdir(parents=True, exist_ok=True)
        sc_port = args.sidecar_metrics_port or free_port()
        sidecar = start_sidecar(spool, store, sc_port, logs / "sidecar.log")
        server = TritonProcess(
            http_port=args.http_port or free_port(), grpc_port=args.grpc_port or free_port(),
            metrics_port=args.metrics_port or free_port(), log_path=logs / "tritonserver.log",
            models=(MODEL, *sd_models), instances=args.instances,
            extra_env={"CHECKPOINT_DIR_RESNET_CLASSIFIER": str(clf_dir), "CAPTURE_SPOOL_DIR": str(spool), "OMP_NUM_THREADS": "1",
                       "CAPTURE_THUMBNAILS": "1"},
        )
        phases = [Phase(label, kind) for label, kind in WEEKS]
        if not args.no_concept_week:
            phases.append(Phase(*CONCEPT_WEEK, relabelled=True))
        truth: dict[str, str] = {}
        try:
            server.start(wait_s=600)
            prog.step(n=10)
            sd_images = [png_bytes(split.holdout_images[i].resize((64, 64))) for i in range(2)]
            n_week = min(args.per_week, len(split.holdout_images))
            for k, ph in enumerate(phases, start=1):
                idx = rng.choice(len(split.holdout_images), n_week, replace=False)
                prog.step(f"replaying {ph.label}")
                replay(ph, [split.holdout_images[i] for i in idx], split.holdout_labels[idx], k, server, sd_images, args, prog, truth)
        finally:
            prog.step("stopping Triton + sidecar (graceful drain)")
            rc_server = server.stop()
            rc_sidecar = stop_process(sidecar)
        if rc_server != 0 or rc_sidecar != 0:
            prog.write(f"warning: tritonserver exited {rc_server}, sidecar {rc_sidecar}; logs in {logs}")
        prog.step(n=10)
        # 4. actuals
        prog.step("posting actuals")
        labels_csv = work / "labels.csv"
        with open(labels_csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["request_id", "label"])
            w.writerows(sorted(truth.items()))
        from monitoring.analysis.actuals.labels import read_labels_csv

        save_actuals(store, read_labels_csv(labels_csv))
        # 5. score each simulated week (explicit windows: the replay phases' time ranges)
        prog.step("scoring weeks")
        windows = [Window(ph.label, ph.start_ms, ph.end_ms) for ph in phases]
        run = score_model(store, MODEL, windows=windows)
        run["saved_as"] = save_scores(store, run)
        # what the sidecar's /metrics would show with the exporter wired in
        from prometheus_client import CollectorRegistry, generate_latest

        reg = CollectorRegistry()
        export_scores(reg, store)
        (work / "drift_metrics.prom").write_bytes(generate_latest(reg))
        prog.step(n=5)
        prog.step("writing report")
        report = build_report(store, MODEL, report_dir, run=run, title="Drift report — demo: clean, blurred, darkened weeks")
        prog.step(n=5)
    finally:
        prog.close()
    table, rows = per_week_table(run)
    sent = sum(p.sent for p in phases)
    failed = sum(p.failed for p in phases)
    summary = {
        "report": str(report), "store": str(store), "classifier": str(clf_dir), "training": info,
        "baseline_version": b.version, "requests_sent": sent, "requests_failed": failed,
        "labels_posted": len(truth), "weeks": rows, "seconds": round(time.perf_counter() - t_start, 1),
        "windows": [{"label": p.label, "start_ms": p.start_ms, "end_ms": p.end_ms} for p in phases],
    }
    (work / "summary.json").write_text(json.dumps(summary, indent=2))
    print()
    print(table)
    print()
    for w in run["windows"]:
        if w.get("any_drift"):
            print(f"{w['label']}: {w['explanation'].get('summary')}")
    print()
    print(f"report:  {report}")
    print(f"store:   {store}   (records, baseline v{b.version}, scores, actuals under _monitoring/)")
    print(f"metrics: {work / 'drift_metrics.prom'}   (drift gauges as Prometheus would scrape them)")
    print("same scores from the command line:")
    spec = " ".join(f"--window '{p.label}={p.start_ms}..{p.end_ms}'" for p in phases)
    print(f"  python -m monitoring score --model {MODEL} --store {store} {spec}")
    print(f"{sent} requests ({failed} failed), {len(truth)} labels, {summary['seconds']} s")
    if args.json:
        print(json.dumps(summary))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
