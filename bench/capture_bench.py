"""P2 — capture on vs off: the classifier's latency and throughput with monitoring capture
enabled and disabled, in one run, on one server, under the same load.

The server loads the classifier twice from the same checkpoint: one copy with capture on (the
sidecar draining the spool as in production), one with capture off (per-model sampling rate 0);
a second server run swaps the roles. Rounds alternate between the two so slow
drifts of a shared machine hit both alike. Goal: p50(on) / p50(off) <= 1.03.

    python bench/capture_bench.py [--arch resnet50|tiny] [--rounds 6] [--requests 40]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitoring.capture.priority import lower_process_priority  # noqa: E402
from serving.server import TritonProcess, free_port, server_env  # noqa: E402

OFF = "resnet_classifier_nocapture"
ON = "resnet_classifier"


def build_repo(out: Path, arch: str) -> Path:
    """Two copies of the classifier model directory sharing one checkpoint."""
    src = ROOT / "model_repository" / "resnet_classifier"
    ckpt = out / "checkpoint"
    if not ckpt.exists():
        if arch == "resnet50":
            from transformers import ConvNextImageProcessor, ResNetConfig, ResNetForImageClassification
            import torch
            torch.manual_seed(0)
            ResNetForImageClassification(ResNetConfig(num_labels=1000)).save_pretrained(ckpt, safe_serialization=True)
            ConvNextImageProcessor(size={"shortest_edge": 224}, crop_pct=0.875).save_pretrained(ckpt)
        else:
            shutil.copytree(src / "1" / "checkpoint", ckpt)
    repo = out / "repository"
    shutil.rmtree(repo, ignore_errors=True)
    for name in (ON, OFF):
        (repo / name / "1").mkdir(parents=True)
        config = (src / "config.pbtxt").read_text().replace('name: "resnet_classifier"', f'name: "{name}"')
        config += f'parameters {{ key: "checkpoint_dir" value: {{ string_value: "{ckpt}" }} }}\n'
        (repo / name / "config.pbtxt").write_text(config)
        shutil.copy(src / "1" / "model.py", repo / name / "1" / "model.py")
    return repo


def payloads(n: int = 16) -> list[bytes]:
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = [Image.fromarray(a) for a in load_sample_images().images]
    out = []
    for i in range(n):
        img = photos[i % len(photos)]
        x, y = (i * 37) % (img.width - 256), (i * 23) % (img.height - 256)
        buf = io.BytesIO()
        img.crop((x, y, x + 256, y + 256)).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def run_load(url: str, model: str, images: list[bytes], concurrency: int, total: int) -> tuple[list[float], float]:
    """Closed loop: `concurrency` workers, `total` requests; returns latencies (ms) and req/s."""
    import tritonclient.grpc as grpcclient

    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(total))

    def worker():
        client = grpcclient.InferenceServerClient(url)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            t = grpcclient.InferInput("image", [1, 1], "BYTES")
            t.set_data_from_numpy(np.array([[images[i % len(images)]]], dtype=object))
            start = time.perf_counter()
            client.infer(model, [t])
            with lock:
                latencies.append((time.perf_counter() - start) * 1000)
        client.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return latencies, total / (time.perf_counter() - start)


def summarize(lat: list[float], rps: list[float]) -> dict:
    a = np.asarray(lat)
    return {"requests": int(a.size), "p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "throughput_rps": float(np.median(rps))}


def measure(server: TritonProcess, on: str, off: str, images: list[bytes], rounds: int, requests: int,
            lat: dict, rps: dict) -> None:
    """Alternating rounds on the two copies; results keyed by condition ("on"/"off")."""
    for model in (on, off):  # warm-up
        run_load(server.grpc_url, model, images, 2, 8)
    for level, concurrency in LEVELS:
        for r in range(rounds):
            for cond, model in ((("on", on), ("off", off)) if r % 2 == 0 else (("off", off), ("on", on))):
                l, t = run_load(server.grpc_url, model, images, concurrency, requests)
                lat[level][cond] += l
                rps[level][cond].append(t)
                print(f"{level} round {r + 1}/{rounds} capture {cond} ({model}): p50 {np.percentile(l, 50):.1f} ms, "
                      f"{t:.1f} req/s", flush=True)


LEVELS = (("latency (concurrency 1)", 1), ("throughput (concurrency 8)", 8))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", choices=["resnet50", "tiny"], default="resnet50")
    p.add_argument("--rounds", type=int, default=6, help="rounds per server run (two runs, roles swapped)")
    p.add_argument("--requests", type=int, default=40, help="requests per model per round and load level")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--env", action="append", default=[], metavar="K=V", help="extra server environment (e.g. CAPTURE_FLUSH_INTERVAL_S=2)")
    p.add_argument("--no-sidecar", action="store_true", help="leave the spool undrained (isolates the model-side cost)")
    a = p.parse_args(argv)
    work = ROOT / "build" / "bench" / f"capture-{a.arch}"
    repo = build_repo(work, a.arch)
    spool, store = work / "spool", work / "store"
    shutil.rmtree(spool, ignore_errors=True)
    shutil.rmtree(store, ignore_errors=True)
    spool.mkdir(parents=True)
    sidecar = None if a.no_sidecar else subprocess.Popen(
        [sys.executable, "-m", "monitoring", "sidecar", "--spool", str(spool), "--store", str(store),
         "--metrics-port", "-1"], cwd=ROOT, env=server_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=lower_process_priority)
    images = payloads()
    extra_env = dict(kv.split("=", 1) for kv in a.env)
    lat = {level: {"on": [], "off": []} for level, _ in LEVELS}
    rps = {level: {"on": [], "off": []} for level, _ in LEVELS}
    try:
        # Two server runs with the copies' roles swapped, so any difference between the two
        # model processes themselves (placement, thread scheduling) cancels out.
        for on, off in ((ON, OFF), (OFF, ON)):
            key = "CAPTURE_SAMPLE_RATE_" + off.upper()
            server = TritonProcess(repo=repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                                   log_path=work / "tritonserver.log", models=(ON, OFF),
                                   extra_env={"CAPTURE_SPOOL_DIR": str(spool), key: "0", **extra_env})
            server.start(wait_s=600)
            try:
                measure(server, on, off, images, a.rounds, a.requests, lat, rps)
            finally:
                server.stop()
    finally:
        if sidecar is not None:
            sidecar.terminate()
            sidecar.wait(120)
    results = {}
    for level, _ in LEVELS:
        on, off = summarize(lat[level]["on"], rps[level]["on"]), summarize(lat[level]["off"], rps[level]["off"])
        results[level] = {"capture_on": on, "capture_off": off,
                          "p50_ratio_on_off": on["p50_ms"] / off["p50_ms"],
                          "p99_ratio_on_off": on["p99_ms"] / off["p99_ms"],
                          "throughput_ratio_on_off": on["throughput_rps"] / off["throughput_rps"]}
    if sidecar is not None:
        from monitoring.store import read_records
        captured = sum(read_records(str(store), m).num_rows for m in (ON, OFF))
    else:
        captured = None
    date = dt.date.today().isoformat()
    report = {"benchmark": "P2 capture on vs off", "date": date, "arch": a.arch, "rounds": a.rounds,
              "requests_per_round": a.requests, "records_captured": captured, "cpu_count": os.cpu_count(),
              "sidecar": not a.no_sidecar, "goal": "p50(on)/p50(off) <= 1.03", "results": results}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / f"capture-{a.arch}-{date}.json").write_text(json.dumps(report, indent=2))
    lines = [f"# P2 capture on vs off — {a.arch}, {date}", "",
             f"Two copies of the classifier on one tritonserver, one with capture on and one off; two server runs "
             f"with the roles swapped; {a.rounds} alternating rounds of {a.requests} requests per copy, load level "
             f"and run. {os.cpu_count()} CPU cores shared by client, server"
             f"{'' if a.no_sidecar else ' and sidecar'}. Records captured: {captured}.", "",
             "| load | p50 on / off (ms) | p99 on / off (ms) | req/s on / off | p50 ratio | throughput ratio |",
             "|---|---|---|---|---|---|"]
    for level, r in results.items():
        on, off = r["capture_on"], r["capture_off"]
        lines.append(f"| {level} | {on['p50_ms']:.1f} / {off['p50_ms']:.1f} | {on['p99_ms']:.1f} / {off['p99_ms']:.1f} | "
                     f"{on['throughput_rps']:.1f} / {off['throughput_rps']:.1f} | {r['p50_ratio_on_off']:.3f} | "
                     f"{r['throughput_ratio_on_off']:.3f} |")
    text = "\n".join(lines) + "\n"
    (a.out / f"capture-{a.arch}-{date}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
