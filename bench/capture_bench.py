"""P2 — capture on vs off: the classifier's latency and throughput with monitoring capture
enabled and disabled, in one run, on one server, under the same load.

The server loads the classifier twice from the same checkpoint: one copy with capture on (the
sidecar draining the spool as in production), one with capture off (per-model sampling rate 0);
a second server run swaps the roles. Rounds alternate between the two so slow
drifts of a shared machine hit both alike. Goal: p50(on) / p50(off) <= 1.03.

    python bench/capture_bench.py [--arch resnet50|tiny] [--rounds 6] [--requests 40] [--block 20] [--block8 40]

``--trace`` also writes every request's wall-clock start and latency, the server runs' roles, the
store's files with their write times and the sidecar's log (``capture-<arch>-<date><tag>-trace.json``):
what the slowest requests overlapped (a compaction, a segment's ingest).

Thumbnails (CAPTURE_THUMBNAILS=1): ``--thumbnails`` measures instead what they add per record,
in one process, thumbnails on and off interleaved on the same decoded inputs: CPU time of the
record function (it runs on the capture worker thread, off the response path) and bytes per
record, as base64 text and in the store's zstd Parquet.

    python bench/capture_bench.py --thumbnails [--rounds 7]

Where capture's cost goes (``--profile``), in one process without Triton: the classifier runtime
answers the same requests with capture on and off, interleaved; per request, the CPU time
capture adds on the request thread (``CaptureHook.observe``: sampling, the RequestCapture of
references, the queue put) and, per record, what the worker spends building and encoding
records, with a cProfile of ``observe``.

    python bench/capture_bench.py --profile [--rounds 5]

Several committed runs side by side (``--summary``): each ratio's mean and sd over the runs, how
many runs were above the goal, and each run's per-round spread (what one run's noise is); when
every run was traced, also all their requests pooled as one run (``pooled_ratios``), and each
run's and the pool's latency ratios with a 95 % bootstrap interval and an A/A noise floor
(bench/capture_noise.py: what one run can resolve).

    python bench/capture_bench.py --summary 2026-12-04-f 2026-12-04-g [--tag=-x]
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

import monitoring.capture.sidecar_command as sidecar_command  # noqa: E402
from bench.capture_noise import latency_noise  # noqa: E402
from serving.launch.server import TritonProcess, free_port, server_env  # noqa: E402

OFF = "resnet_classifier_nocapture"
ON = "resnet_classifier"
#: P2's goal: every cost ratio (p50 and p99 on/off, throughput off/on, concurrency 1 and 8) at most this.
P2_GOAL = 1.03


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


#: ``--trace``: every request's (model, concurrency, wall-clock start in s, latency in ms), in order.
TRACE: list[tuple[str, int, float, float]] | None = None


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
            wall, start = time.time(), time.perf_counter()
            client.infer(model, [t])
            with lock:
                latencies.append((time.perf_counter() - start) * 1000)
                if TRACE is not None:
                    TRACE.append((model, concurrency, round(wall, 4), round(latencies[-1], 2)))
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
            lat: dict, rps: dict, paired: dict | None = None, block: int = 0, block8: int = 0) -> None:
    """Alternating rounds on the two copies; results keyed by condition ("on"/"off"). ``paired``
    gets each round's (p50 on, p50 off, req/s on, req/s off): side by side in time, so their
    ratio is what a drifting background load disturbs least.

    ``block`` (concurrency 1; 0: the whole round): a round's requests go to the two copies in
    blocks of this many, in A B B A order, so the host's swings of a few seconds fall on both
    alike. ``block8``: the same at concurrency 8 (0: the whole round); each block starts and drains
    its 8 callers, so keep it several times 8."""
    for model in (on, off):  # warm-up
        run_load(server.grpc_url, model, images, 2, 8)
    for level, concurrency in LEVELS:
        size = {1: block, 8: block8}.get(concurrency, 0)
        size = size if 0 < size < requests else requests
        for r in range(rounds):
            first = (("on", on), ("off", off)) if r % 2 == 0 else (("off", off), ("on", on))
            got: dict[str, list[float]] = {"on": [], "off": []}
            took = {"on": 0.0, "off": 0.0}
            for j, start in enumerate(range(0, requests, size)):
                for cond, model in (first if j % 2 == 0 else first[::-1]):
                    n = min(size, requests - start)
                    l, t = run_load(server.grpc_url, model, images, concurrency, n)
                    got[cond] += l
                    took[cond] += n / t
            this_round = {}
            for cond, model in first:
                t = requests / took[cond]
                lat[level][cond] += got[cond]
                rps[level][cond].append(t)
                this_round[cond] = (float(np.percentile(got[cond], 50)), t)
                print(f"{level} round {r + 1}/{rounds} capture {cond} ({model}): p50 {this_round[cond][0]:.1f} ms, "
                      f"{t:.1f} req/s", flush=True)
            if paired is not None:
                paired[level].append((this_round["on"][0], this_round["off"][0], this_round["on"][1], this_round["off"][1]))


LEVELS = (("latency (concurrency 1)", 1), ("throughput (concurrency 8)", 8))


RATIOS = (("p50 on÷off", lambda r: r["p50_ratio_on_off"]), ("p99 on÷off", lambda r: r["p99_ratio_on_off"]),
          ("throughput off÷on", lambda r: 1.0 / r["throughput_ratio_on_off"]))


def server_run_ratios(doc: dict, trace: Path) -> list[dict[str, float]] | None:
    """p50 on÷off of each server run of a committed run, by load level: from the run's report, or
    recomputed from its ``--trace`` file (runs before ``--server-runs``); None without either."""
    if doc.get("server_runs") and "p50_ratio_on_off" in doc["server_runs"][0]:
        return [r["p50_ratio_on_off"] for r in doc["server_runs"]]
    if not trace.exists():
        return None
    t = json.loads(trace.read_text())
    out = []
    for r in t["runs"]:
        ratio = {}
        for level, concurrency in LEVELS:
            p50 = {m: np.percentile([x[3] for x in t["requests"] if x[0] == m and x[1] == concurrency
                                     and r["start"] <= x[2] <= r["end"]], 50) for m in (r["on"], r["off"])}
            ratio[level] = float(p50[r["on"]] / p50[r["off"]])
        out.append(ratio)
    return out


def pooled_ratios(traces: list[dict], rounds: list[dict]) -> dict[str, dict[str, float]]:
    """The six ratios over several runs' requests as if they were one run: latencies from the
    runs' ``--trace`` files (each request counted as on or off by its server run's roles),
    throughput the median of all their rounds' req/s (``rounds``: each run's report results).
    Only meaningful for runs of one design; one run's own ratios come out unchanged."""
    out = {}
    for level, concurrency in LEVELS:
        lat: dict[str, list[float]] = {"on": [], "off": []}
        for t in traces:
            for r in t["runs"]:
                role = {r["on"]: "on", r["off"]: "off"}
                for model, c, start, ms in t["requests"]:
                    if c == concurrency and model in role and r["start"] <= start <= r["end"]:
                        lat[role[model]].append(ms)
        pr = np.concatenate([np.asarray(res[level]["per_round"]["rounds"]) for res in rounds])
        on, off = np.asarray(lat["on"]), np.asarray(lat["off"])
        out[level] = {"requests_per_condition": int(min(on.size, off.size)),
                      "p50 on÷off": float(np.percentile(on, 50) / np.percentile(off, 50)),
                      "p99 on÷off": float(np.percentile(on, 99) / np.percentile(off, 99)),
                      "throughput off÷on": float(np.median(pr[:, 3]) / np.median(pr[:, 2]))}
    return out


def summary(runs: list[str], arch: str, out: Path, tag: str = "", resamples: int = 1000, splits: int = 400) -> int:
    """Several committed runs side by side: each ratio's mean and sd over the runs and how many
    were above the goal, and the per-round spread of each run (what one run's noise is); for
    traced runs also the pooled ratios and each latency ratio's bootstrap interval (``resamples``)
    and A/A noise (``splits``), bench/capture_noise.py."""
    docs = {name: json.loads((out / f"capture-{arch}-{name}.json").read_text()) for name in runs}
    levels = [level for level, _ in LEVELS]
    table = {}
    for level in levels:
        for label, get in RATIOS:
            v = np.array([get(d["results"][level]) for d in docs.values()])
            table[f"{level}: {label}"] = {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0,
                                          "above_goal": int((v > P2_GOAL).sum()), "runs": int(v.size),
                                          "min": float(v.min()), "max": float(v.max())}
    spread = {}
    for name, d in docs.items():
        spread[name] = {}
        for level in levels:
            pr = np.asarray(d["results"][level]["per_round"]["rounds"])
            spread[name][level] = float((pr[:, 0] / pr[:, 1]).std())
    traces = {name: out / f"capture-{arch}-{name}-trace.json" for name in runs}
    per_server_run = {name: server_run_ratios(d, traces[name]) for name, d in docs.items()}
    pooled = noise = None
    if all(path.exists() for path in traces.values()):
        loaded = {name: json.loads(path.read_text()) for name, path in traces.items()}
        pooled = pooled_ratios(list(loaded.values()), [d["results"] for d in docs.values()])
        noise = {name: latency_noise([t], LEVELS, P2_GOAL, resamples, splits) for name, t in loaded.items()}
        if len(loaded) > 1:
            noise["pooled"] = latency_noise(list(loaded.values()), LEVELS, P2_GOAL, resamples, splits)
    date = dt.date.today().isoformat()
    report = {"benchmark": "P2 runs side by side", "date": date, "runs": runs, "goal": P2_GOAL, "ratios": table,
              "per_round_p50_ratio_sd": spread, "per_server_run_p50_ratio": per_server_run, "pooled": pooled,
              "latency_noise": noise}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"capture-{arch}-summary-{date}{tag}.json").write_text(json.dumps(report, indent=2))
    lines = [f"# P2 runs side by side — {arch}, {date}", "",
             "Runs: " + ", ".join(f"[{n}](capture-{arch}-{n}.md)" for n in runs) + ".", "",
             f"| ratio | mean ± sd over the runs | min – max | runs above {P2_GOAL} |", "|---|---|---|---|"]
    for key, t in table.items():
        lines.append(f"| {key} | {t['mean']:.3f} ± {t['sd']:.3f} | {t['min']:.3f} – {t['max']:.3f} | "
                     f"{t['above_goal']} of {t['runs']} |")
    if pooled:
        lines += ["", "All the runs' requests pooled, as one run (latencies from their traces; throughput the median "
                  "of all their rounds):", "", "| load | requests per condition | p50 on÷off | p99 on÷off | "
                  "throughput off÷on |", "|---|---|---|---|---|"]
        for level, r in pooled.items():
            lines.append(f"| {level} | {r['requests_per_condition']} | {r['p50 on÷off']:.3f} | {r['p99 on÷off']:.3f} | "
                         f"{r['throughput off÷on']:.3f} |")
    if noise:
        lines += ["", "How far each latency ratio can be trusted (bench/capture_noise.py; whole stretches of one copy's "
                  "requests resampled, never single requests): the ratio and its 95 % two-stage bootstrap interval "
                  "(server runs, then their stretches), and capture off against capture off (each server run's off "
                  f"stretches split in random halves, {splits} times): the sd of that A/A ratio and how often it "
                  f"lands above {P2_GOAL}, i.e. what the run would report for a capture that costs nothing (each half "
                  "is half the run, so ~1.4 times a whole run's spread; it misses each restart's draw of the copies' "
                  "speeds, which the interval includes):", "",
                  "| run | load | server runs | stretches per copy | p50 on÷off [95 % CI] | A/A p50: sd, above goal | "
                  "p99 on÷off [95 % CI] | A/A p99: sd, above goal |", "|---|---|---|---|---|---|---|---|"]
        for name, per in noise.items():
            for level, r in per.items():
                cells = [f"{r[p]['ratio']:.3f} [{r[p]['ci_low']:.3f}, {r[p]['ci_high']:.3f}] | "
                         f"{r[p]['aa_sd']:.3f}, {r[p]['aa_above_goal']:.0%}" for p in ("p50", "p99")]
                lines.append(f"| {name} | {level} | {r['p50']['server_runs']} | {r['p50']['stretches']} | "
                             + " | ".join(cells) + " |")
    lines += ["", "Within each run, the sd of the per-round p50 on÷off ratio (the host's swings between rounds):", "",
              "| run | " + " | ".join(levels) + " |", "|---|" + "---|" * len(levels)]
    for name, per in spread.items():
        lines.append(f"| {name} | " + " | ".join(f"{per[level]:.3f}" for level in levels) + " |")
    if any(per_server_run.values()):
        lines += ["", "p50 on÷off of each server run (a restart draws the two copies' speeds again), where the "
                  "run's report or its trace has it:", "", "| run | " + " | ".join(levels) + " |",
                  "|---|" + "---|" * len(levels)]
        for name, per in per_server_run.items():
            if per:
                lines.append(f"| {name} | " + " | ".join(", ".join(f"{r[level]:.3f}" for r in per) for level in levels)
                             + " |")
    text = "\n".join(lines) + "\n"
    (out / f"capture-{arch}-summary-{date}{tag}.md").write_text(text)
    print(text)
    return 0


def parquet_bytes(records: list[dict]) -> int:
    import pyarrow.parquet as pq

    from monitoring.ingest.store import records_to_table

    buf = io.BytesIO()
    pq.write_table(records_to_table(records), buf, compression="zstd")  # as the store writes segments
    return buf.tell()


def thumbnail_cost(rounds: int, out: Path) -> int:
    """Per-record cost of CAPTURE_THUMBNAILS=1: record function time and record size, on vs off."""
    from PIL import Image

    from monitoring.capture.record import Contribution, RecordOptions, record_fields

    rng = np.random.default_rng(0)
    sizes = {"classifier input (256 px JPEG crop)": 256, "SD input (512 px)": 512}
    results = {}
    for label, side in sizes.items():
        images = [Image.open(io.BytesIO(b)).convert("RGB").resize((side, side)) for b in payloads()]
        for im in images:
            im.load()
        contribs = [Contribution(input_image=im, embeddings={"embedding": (rng.normal(size=2048).astype(np.float32), "bench")})
                    for im in images]
        times = {"on": [], "off": []}
        recs = {"on": [], "off": []}
        for r in range(rounds):
            for cond in (("on", "off") if r % 2 == 0 else ("off", "on")):
                opts = RecordOptions(thumbnails=cond == "on")
                t0 = time.perf_counter()
                rows = [record_fields(c, opts) for c in contribs]
                times[cond].append((time.perf_counter() - t0) / len(contribs) * 1000)
                recs[cond] = rows
        base = {"schema_version": 1, "model": "bench", "model_version": "1", "ts_ms": 0, "outcome": "ok"}
        full = {c: [dict(base, request_id=f"r{i}", **row) for i, row in enumerate(recs[c])] for c in recs}
        thumbs = [len(r["thumbnail"]) for r in recs["on"]]
        on_ms, off_ms = float(np.median(times["on"])), float(np.median(times["off"]))
        pq_on, pq_off = parquet_bytes(full["on"]) / len(contribs), parquet_bytes(full["off"]) / len(contribs)
        results[label] = {"record_ms_on": on_ms, "record_ms_off": off_ms, "thumbnail_ms": on_ms - off_ms,
                          "thumbnail_b64_bytes_mean": float(np.mean(thumbs)), "parquet_bytes_per_record_on": pq_on,
                          "parquet_bytes_per_record_off": pq_off, "parquet_ratio_on_off": pq_on / pq_off}
    date = dt.date.today().isoformat()
    report = {"benchmark": "P2b capture thumbnails on vs off", "date": date, "rounds": rounds, "records_per_round": len(payloads()),
              "cpu_count": os.cpu_count(), "results": results}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"capture-thumbnails-{date}.json").write_text(json.dumps(report, indent=2))
    lines = [f"# P2b capture thumbnails (CAPTURE_THUMBNAILS=1) on vs off — {date}", "",
             f"The record function on {len(payloads())} decoded inputs with a 2048-d embedding, thumbnails on and off "
             f"interleaved, {rounds} rounds, median per record; {os.cpu_count()} CPU cores (shared machine: times are noisy, "
             "the byte counts are not). It runs on the capture worker thread, not on the response path.", "",
             "| input | record ms on / off | thumbnail ms | thumbnail base64 bytes | Parquet bytes/record on / off | ratio |",
             "|---|---|---|---|---|---|"]
    for label, r in results.items():
        lines.append(f"| {label} | {r['record_ms_on']:.2f} / {r['record_ms_off']:.2f} | {r['thumbnail_ms']:.2f} | "
                     f"{r['thumbnail_b64_bytes_mean']:.0f} | {r['parquet_bytes_per_record_on']:.0f} / "
                     f"{r['parquet_bytes_per_record_off']:.0f} | {r['parquet_ratio_on_off']:.2f} |")
    text = "\n".join(lines) + "\n"
    (out / f"capture-thumbnails-{date}.md").write_text(text)
    print(text)
    return 0


_SIDECAR_CPU = """
import json, sys, time
from monitoring.ingest.sidecar.__main__ import main  # noqa: F401  (its thread caps, as when started)
from monitoring.ingest.sidecar.service import Sidecar
warm_spool, warm_store, spool, store = sys.argv[1:5]
Sidecar(warm_spool, warm_store, compact_every=0).run_once()  # imports and first-file setup
sidecar = Sidecar(spool, store, compact_every=0)
t0, segments = time.process_time(), 0
while (done := sidecar.run_once()):
    segments += done
print(json.dumps({"segments": segments, "cpu_ms": (time.process_time() - t0) * 1000}))
"""


def sidecar_cpu_per_segment(records: list[dict], size: int, segments: int = 8, blas_threads: int | None = None) -> float:
    """CPU (ms) the sidecar spends per spool segment of `size` records, in a fresh process
    (`blas_threads`: OPENBLAS_NUM_THREADS instead of the one its __main__ sets)."""
    import tempfile

    from monitoring.capture import Capturer

    with tempfile.TemporaryDirectory(prefix="capture-profile-") as tmp:
        dirs = [os.path.join(tmp, d) for d in ("warm-spool", "warm-store", "spool", "store")]
        for spool, n, tag in ((dirs[0], 1, "w"), (dirs[2], segments, "s")):
            cap = Capturer(spool, ON, batch_size=size, flush_interval_s=60.0)
            for i in range(n * size):
                cap.submit(dict(records[i % len(records)], request_id=f"{tag}{i}"))
            cap.close()
        env = dict(os.environ)
        env.pop("OPENBLAS_NUM_THREADS", None)
        if blas_threads is not None:
            env["OPENBLAS_NUM_THREADS"] = str(blas_threads)
        out = subprocess.run([sys.executable, "-c", _SIDECAR_CPU, *dirs], cwd=ROOT, env=env, check=True,
                             capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return result["cpu_ms"] / max(result["segments"], 1)


def request_thread_profile(rounds: int, out: Path, batch: int = 4, tag: str = "") -> int:
    """Capture's CPU on the request thread (observe) and on the worker (records, encoding), in-process."""
    import cProfile
    import pstats
    import tempfile

    import torch

    from monitoring.capture import Capturer
    from serving.runtime.capture_hook import CaptureHook
    from serving.runtime.device import DeviceSpec
    from serving.runtime.models import runtime_class
    from serving.runtime.models.base import RawRequest

    torch.set_num_threads(2)
    work = ROOT / "build" / "bench" / "capture-resnet50"
    build_repo(work, "resnet50")
    rt = runtime_class(ON)(str(work / "checkpoint"), DeviceSpec.for_instance("CPU"), max_pipeline_batch=32)
    rt.load()
    images = payloads()
    spool = tempfile.mkdtemp(prefix="capture-profile-")
    cap = Capturer(spool, ON)
    hook = CaptureHook(rt, "1", cap)
    profiler = cProfile.Profile()
    observe_ms, handle_ms, n = [], [], 0
    for r in range(rounds + 1):  # round 0 warms up
        reqs = [RawRequest({"image": np.array([[images[(n + j) % len(images)]]], dtype=object)}, f"p{n + j}")
                for j in range(batch)]
        n += batch
        t0 = time.thread_time()
        results = rt.handle(reqs)
        t1 = time.thread_time()
        profiler.enable()
        hook.observe([q.request_id for q in reqs], results, int(time.time() * 1000))
        profiler.disable()
        t2 = time.thread_time()
        if r:
            handle_ms.append((t1 - t0) * 1000 / batch)
            observe_ms.append((t2 - t1) * 1000 / batch)
    # The worker's share, timed on this thread over the same requests' records.
    entries = [hook.request(f"w{i}", res, 0) for i, res in enumerate(results)] * 8
    t0 = time.thread_time()
    records = [rec for e in entries for rec in e.records()]
    build_ms = (time.thread_time() - t0) * 1000 / len(records)
    t0 = time.thread_time()
    cap._encode(records)
    encode_ms = (time.thread_time() - t0) * 1000 / len(records)
    cap.close()
    shutil.rmtree(spool, ignore_errors=True)
    # The sidecar's share, in a process of its own started as the model processes start it
    # (its __main__ caps BLAS at one thread; a process that has loaded torch would not show
    # that): CPU per segment at two segment sizes, hence its cost per segment and per record.
    sidecar_ms = {size: sidecar_cpu_per_segment(records, size) for size in (16, 64)}
    per_record = (sidecar_ms[64] - sidecar_ms[16]) / (64 - 16)
    per_segment = sidecar_ms[16] - 16 * per_record
    blas_pool_ms = sidecar_cpu_per_segment(records, 16, blas_threads=os.cpu_count())
    from monitoring.capture.capturer import DEFAULT_FLUSH_INTERVAL_S

    seg_records = round(15 / 2 * DEFAULT_FLUSH_INTERVAL_S)
    text_io = io.StringIO()
    pstats.Stats(profiler, stream=text_io).sort_stats("cumulative").print_stats(8)
    date = dt.date.today().isoformat()
    report = {"benchmark": "P2 capture profile (in-process)", "date": date, "rounds": rounds, "batch": batch,
              "cpu_count": os.cpu_count(), "handle_cpu_ms_per_request": float(np.median(handle_ms)),
              "observe_cpu_ms_per_request": float(np.median(observe_ms)),
              "worker_build_cpu_ms_per_record": build_ms, "worker_encode_cpu_ms_per_record": encode_ms,
              "sidecar_cpu_ms_per_segment": {str(k): v for k, v in sidecar_ms.items()},
              "sidecar_cpu_ms_fixed_per_segment": per_segment, "sidecar_cpu_ms_per_record": per_record,
              "sidecar_cpu_ms_per_segment_16_blas_pool": blas_pool_ms}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"capture-profile-{date}{tag}.json").write_text(json.dumps(report, indent=2))
    text = "\n".join([
        f"# P2 capture profile (in-process, ResNet-50 shape, batch {batch}) — {date}", "",
        f"Request thread, CPU per request (medians of {rounds} batches): handle() {report['handle_cpu_ms_per_request']:.1f} ms, "
        f"capture (observe) {report['observe_cpu_ms_per_request']:.3f} ms.",
        f"Capture worker, CPU per record: building {build_ms:.2f} ms, segment encoding {encode_ms:.3f} ms.",
        f"Sidecar (`python -m monitoring.ingest.sidecar`, ingest into a local store), CPU per segment: "
        f"{sidecar_ms[16]:.1f} ms of 16 records, {sidecar_ms[64]:.1f} ms of 64, i.e. {per_segment:.1f} ms a segment "
        f"plus {per_record:.3f} ms a record. Each instance writes its own segments every "
        f"{DEFAULT_FLUSH_INTERVAL_S:g} s (CAPTURE_FLUSH_INTERVAL_S): at ~15 req/s over two instances, segments of "
        f"~{seg_records} records cost {(per_segment + seg_records * per_record) / seg_records:.2f} ms a record "
        f"(at 2 s: {(per_segment + 15 * per_record) / 15:.2f} ms). With OpenBLAS's default pool "
        f"({os.cpu_count()} threads) instead of the one thread its __main__ sets: {blas_pool_ms:.1f} ms a 16-record "
        f"segment.", "",
        "cProfile of observe (cumulative):", "", "```", text_io.getvalue().replace(str(ROOT) + "/", "").strip(), "```", ""])
    (out / f"capture-profile-{date}{tag}.md").write_text(text)
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", choices=["resnet50", "tiny"], default="resnet50")
    p.add_argument("--rounds", type=int, default=6, help="rounds per server run (two runs, roles swapped)")
    p.add_argument("--requests", type=int, default=40, help="requests per model per round and load level")
    p.add_argument("--server-runs", type=int, default=2,
                   help="server starts, the copies' roles swapped at each (an even number; default 2)")
    p.add_argument("--block", type=int, default=0,
                   help="at concurrency 1, alternate the copies every N requests within a round (A B B A); 0: whole rounds")
    p.add_argument("--block8", type=int, default=0,
                   help="at concurrency 8, alternate the copies every N requests within a round (A B B A); 0: whole rounds")
    p.add_argument("--summary", nargs="+", metavar="RUN",
                   help="side by side: committed runs by name (e.g. 2026-12-04-f), mean and sd of each ratio")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--env", action="append", default=[], metavar="K=V", help="extra server environment (e.g. CAPTURE_FLUSH_INTERVAL_S=2)")
    p.add_argument("--no-sidecar", action="store_true", help="leave the spool undrained (isolates the model-side cost)")
    p.add_argument("--thumbnails", action="store_true", help="measure what CAPTURE_THUMBNAILS=1 adds per record (no server)")
    p.add_argument("--profile", action="store_true", help="where capture's CPU goes, in-process (no server)")
    p.add_argument("--trace", action="store_true",
                   help="also write every request's start and latency, the server runs' roles and the store's files "
                        "with their write times (capture-<arch>-<date><tag>-trace.json), and the sidecar's log")
    p.add_argument("--tag", default="", help="suffix of the result files (e.g. --tag=-b: capture-resnet50-<date>-b.md)")
    a = p.parse_args(argv)
    if a.server_runs < 2 or a.server_runs % 2:
        p.error(f"--server-runs must be an even number >= 2 (each copy capturing in half of them), got {a.server_runs}")
    if a.summary:
        return summary(a.summary, a.arch, a.out, a.tag)
    if a.profile:
        return request_thread_profile(a.rounds, a.out, tag=a.tag)
    if a.thumbnails:
        return thumbnail_cost(a.rounds, a.out)
    work = ROOT / "build" / "bench" / f"capture-{a.arch}"
    repo = build_repo(work, a.arch)
    spool, store = work / "spool", work / "store"
    shutil.rmtree(spool, ignore_errors=True)
    shutil.rmtree(store, ignore_errors=True)
    spool.mkdir(parents=True)
    global TRACE
    TRACE = [] if a.trace else None
    runs: list[dict] = []
    sidecar_log = open(work / "sidecar.log", "wb") if a.trace else subprocess.DEVNULL
    # The command line the model processes start it with (monitoring.capture.sidecar_command).
    sidecar = None if a.no_sidecar else subprocess.Popen(
        sidecar_command.argv({"CAPTURE_SPOOL_DIR": str(spool), "CAPTURE_STORE": str(store),
                              "CAPTURE_SIDECAR_METRICS_PORT": "-1"}),
        # A session of its own, as the model processes start it (serving/runtime/host_services.py):
        # on a host with autogroups that decides whom its niceness yields to (bench/nice_bench.py).
        cwd=ROOT, env=server_env(), stdout=subprocess.DEVNULL, stderr=sidecar_log, start_new_session=True)
    images = payloads()
    extra_env = dict(kv.split("=", 1) for kv in a.env)
    lat = {level: {"on": [], "off": []} for level, _ in LEVELS}
    rps = {level: {"on": [], "off": []} for level, _ in LEVELS}
    paired: dict = {level: [] for level, _ in LEVELS}
    load_start = os.getloadavg()
    try:
        # Server runs with the copies' roles swapped each time. Two copies of one model differ in
        # speed by up to ~10 % for a server's lifetime, and a restart draws that again
        # (docs/bench.md "P2"): only many runs average it out.
        for k in range(a.server_runs):
            on, off = (ON, OFF) if k % 2 == 0 else (OFF, ON)
            marks = {level: {c: len(lat[level][c]) for c in ("on", "off")} for level, _ in LEVELS}
            key = "CAPTURE_SAMPLE_RATE_" + off.upper()
            server = TritonProcess(repo=repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                                   log_path=work / "tritonserver.log", models=(ON, OFF),
                                   extra_env={"CAPTURE_SPOOL_DIR": str(spool), key: "0", **extra_env})
            server.start(wait_s=600)
            runs.append({"on": on, "off": off, "start": time.time()})
            try:
                measure(server, on, off, images, a.rounds, a.requests, lat, rps, paired, block=a.block, block8=a.block8)
            finally:
                server.stop()
            runs[-1]["end"] = time.time()
            runs[-1]["p50_ratio_on_off"] = {level: float(np.percentile(lat[level]["on"][marks[level]["on"]:], 50)
                                                         / np.percentile(lat[level]["off"][marks[level]["off"]:], 50))
                                            for level, _ in LEVELS}
    finally:
        if sidecar is not None:
            sidecar.terminate()
            sidecar.wait(120)
        if a.trace:
            sidecar_log.close()
    results = {}
    for level, _ in LEVELS:
        on, off = summarize(lat[level]["on"], rps[level]["on"]), summarize(lat[level]["off"], rps[level]["off"])
        results[level] = {"capture_on": on, "capture_off": off,
                          "p50_ratio_on_off": on["p50_ms"] / off["p50_ms"],
                          "p99_ratio_on_off": on["p99_ms"] / off["p99_ms"],
                          "throughput_ratio_on_off": on["throughput_rps"] / off["throughput_rps"]}
        pr = np.asarray(paired[level])
        results[level]["per_round"] = {  # [p50 on, p50 off, req/s on, req/s off] of each round pair
            "rounds": pr.tolist(), "p50_ratio_median": float(np.median(pr[:, 0] / pr[:, 1])),
            "throughput_off_on_median": float(np.median(pr[:, 3] / pr[:, 2]))}
    load_end = os.getloadavg()
    worst = max(max(r["p50_ratio_on_off"], r["p99_ratio_on_off"], 1.0 / r["throughput_ratio_on_off"]) for r in results.values())
    if sidecar is not None:
        from monitoring.ingest.store import read_records
        captured = sum(read_records(str(store), m).num_rows for m in (ON, OFF))
    else:
        captured = None
    date = dt.date.today().isoformat()
    report = {"benchmark": "P2 capture on vs off", "date": date, "arch": a.arch, "rounds": a.rounds,
              "requests_per_round": a.requests, "block_concurrency_1": a.block or a.requests, "block_concurrency_8": a.block8 or a.requests, "records_captured": captured, "cpu_count": os.cpu_count(),
              "sidecar": not a.no_sidecar, "load_average_start": load_start, "load_average_end": load_end,
              "env": extra_env, "server_runs": runs, "goal": "p50 and p99 on/off and throughput off/on <= 1.03 at concurrency 1 and 8",
              "worst_ratio": worst, "results": results}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / f"capture-{a.arch}-{date}{a.tag}.json").write_text(json.dumps(report, indent=2))
    if a.trace:
        files = sorted((str(f.relative_to(store)), f.stat().st_mtime) for f in store.rglob("*") if f.is_file())
        (a.out / f"capture-{a.arch}-{date}{a.tag}-trace.json").write_text(json.dumps(
            {"runs": runs, "requests": TRACE, "store_files": files,
             "sidecar_log": (work / "sidecar.log").read_text(errors="replace").splitlines()}))
    blocks = [f"at concurrency {c} in blocks of {n}" for c, n in ((1, a.block), (8, a.block8)) if 0 < n < a.requests]
    block_text = f" (each round {' and '.join(blocks)}, A B B A)" if blocks else ""
    lines = [f"# P2 capture on vs off — {a.arch}, {date}", "",
             f"Two copies of the classifier on one tritonserver, one with capture on and one off; {a.server_runs} server runs "
             f"with the roles swapped at each; {a.rounds} alternating rounds of {a.requests} requests per copy, load level "
             f"and run{block_text}. {os.cpu_count()} CPU cores shared by client, server"
             f"{'' if a.no_sidecar else ' and sidecar'}. Records captured: {captured}. Load average (1/5/15 min) "
             f"at start {', '.join(f'{x:.1f}' for x in load_start)}, at end {', '.join(f'{x:.1f}' for x in load_end)}"
             f"{'; server env ' + str(extra_env) if extra_env else ''}.", "",
             f"Worst of the six cost ratios (goal <= 1.03 each): **{worst:.3f}**.", "",
             "| load | p50 on / off (ms) | p99 on / off (ms) | req/s on / off | p50 on/off | p99 on/off | throughput off/on "
             "| per-round pairs: median p50 on/off | median throughput off/on |",
             "|---|---|---|---|---|---|---|---|---|"]
    for level, r in results.items():
        on, off, pr = r["capture_on"], r["capture_off"], r["per_round"]
        lines.append(f"| {level} | {on['p50_ms']:.1f} / {off['p50_ms']:.1f} | {on['p99_ms']:.1f} / {off['p99_ms']:.1f} | "
                     f"{on['throughput_rps']:.2f} / {off['throughput_rps']:.2f} | {r['p50_ratio_on_off']:.3f} | "
                     f"{r['p99_ratio_on_off']:.3f} | {1.0 / r['throughput_ratio_on_off']:.3f} | "
                     f"{pr['p50_ratio_median']:.3f} | {pr['throughput_off_on_median']:.3f} |")
    lines += ["", "p50 on÷off of each server run (the copy capturing in brackets): " + "; ".join(
        f"{i + 1} ({r['on']}): " + " / ".join(f"{r['p50_ratio_on_off'][level]:.3f}" for level, _ in LEVELS)
        for i, r in enumerate(runs)) + " (concurrency 1 / 8)."]
    text = "\n".join(lines) + "\n"
    (a.out / f"capture-{a.arch}-{date}{a.tag}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
