"""P1 and P4: what the served models achieve against what the same code does in-process.

P1  resnet_classifier with ResNet-50's real shape (random weights, 25.6 M parameters): served
    throughput at saturation (Triton dynamic batching, closed loop at several concurrencies)
    divided by the BEST in-process throughput of the same runtime over a sweep of batch sizes
    1-32 after warm-up (`handle()` with whole batches: decode + preprocess + forward +
    postprocess, the same images): the physical limit on this machine. Goal >= 0.85.
P4  tiny sd_img2img served: 4 compatible requests sent together (the dynamic batcher makes one
    pipeline call) against the same 4 sent one at a time; throughput ratio, twice: with the
    one-at-a-time baseline on the shipped config (each lone request waits the 50 ms batching
    delay) and on a copy with no queue delay (the baseline without that penalty). Both configs
    are served by one tritonserver (`sd_img2img` and `sd_img2img_nodelay`, same checkpoint) and
    every round measures all three sides, in an order that rotates per round. Cross-checked
    in-process (`handle()` of 4 requests vs 4 calls). Goal >= 1.5.

Both use the load tester's payloads (real photos and digits) and its closed-loop runner.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from serving.common import procfs  # noqa: E402
from bench.loadtest.payloads import PayloadFactory  # noqa: E402
from bench.loadtest.runner import run_concurrency_step  # noqa: E402
from bench.loadtest.stats import ServerStats, server_delta  # noqa: E402
from bench.loadtest.transports import TritonTransport  # noqa: E402

BENCH_REPO = ROOT / "build" / "bench" / "model_repository"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def start_server(repo: Path, models: tuple[str, ...], threads: int, log_name: str):
    from serving.launch.server import TritonProcess, free_port

    server = TritonProcess(repo=repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                           log_path=ROOT / "build" / "bench" / "logs" / log_name, models=models,
                           extra_env={"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)})
    server.start(wait_s=900)
    return server


# -- P1 -----------------------------------------------------------------------------------
def build_resnet50_repo(repo: Path = BENCH_REPO) -> Path:
    """model_repository/resnet_classifier with a random-weight ResNet-50 checkpoint (built once)."""
    model_dir = repo / "resnet_classifier"
    ckpt = model_dir / "1" / "checkpoint"
    src = ROOT / "model_repository" / "resnet_classifier"
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    shutil.copy2(src / "config.pbtxt", model_dir / "config.pbtxt")
    shutil.copy2(src / "1" / "model.py", model_dir / "1" / "model.py")
    if (ckpt / ".done").exists():
        return ckpt
    import torch
    from transformers import ConvNextImageProcessor, ResNetConfig, ResNetForImageClassification

    log("building a random-weight ResNet-50 checkpoint (once) ...")
    torch.manual_seed(0)
    labels = [f"class_{i}" for i in range(1000)]
    config = ResNetConfig(num_labels=1000, id2label=dict(enumerate(labels)),
                          label2id={name: i for i, name in enumerate(labels)})  # defaults = resnet-50
    model = ResNetForImageClassification(config).eval()
    ckpt.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(ckpt), safe_serialization=True)
    ConvNextImageProcessor(size={"shortest_edge": 224}, crop_pct=0.875).save_pretrained(str(ckpt))
    (ckpt / ".done").write_text(json.dumps({"params": sum(p.numel() for p in model.parameters())}))
    return ckpt


def _raw_request(payload) -> Any:
    import numpy as np

    from serving.runtime.models.base import RawRequest

    return RawRequest({k: np.array([[v]], dtype=np.object_) for k, v in payload.inputs.items()})


def _proc_cpu_s(pids: list[int]) -> float:
    """user + system CPU seconds used so far by `pids` (Linux /proc)."""
    return sum(procfs.cpu_seconds(pid) or 0.0 for pid in pids)


def _server_pids(root_pid: int) -> list[int]:
    """tritonserver and its descendants (the Python-backend stubs)."""
    return procfs.descendants(root_pid)


def _inprocess_window(runtime, reqs, seconds: float) -> dict[str, float]:
    n_images, cpu0, start = 0, time.process_time(), time.perf_counter()
    while True:
        runtime.handle(reqs)
        n_images += len(reqs)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and n_images >= 2 * len(reqs):
            break
    return {"images": n_images, "seconds": elapsed, "ips": n_images / elapsed,
            "cpu_s_per_image": (time.process_time() - cpu0) / n_images}


INPROCESS_BATCHES = (1, 2, 4, 8, 16, 32)


def run_p1(seconds: float = 15.0, threads: int = 2, concurrencies: list[int] | None = None,
           rounds: int = 3, inprocess_batches: tuple[int, ...] = INPROCESS_BATCHES) -> dict[str, Any]:
    """Interleaved windows (in-process, then served, per batch size, `rounds` times); medians.

    Other processes may share the machine: alternating short windows lets both sides see the
    same background load, and CPU seconds per image (which background load barely changes)
    are recorded as a cross-check of the wall-clock ratio.
    """
    import torch

    from serving.runtime.device import DeviceSpec
    from serving.runtime.models import runtime_class

    concurrencies = concurrencies or [8, 16]
    ckpt = build_resnet50_repo()
    torch.set_num_threads(threads)
    runtime = runtime_class("resnet_classifier")(str(ckpt), DeviceSpec("cpu", torch.float32), max_pipeline_batch=64)
    runtime.load()
    params = sum(p.numel() for p in runtime.model.parameters())
    factory = PayloadFactory("resnet_classifier")
    server = start_server(BENCH_REPO, ("resnet_classifier",), threads, "p1-tritonserver.log")
    windows: dict[str, dict[str, list]] = {str(c): {"inprocess": [], "served": []} for c in concurrencies}
    sweep: dict[str, list] = {str(b): [] for b in inprocess_batches}
    batch_reqs = {b: [_raw_request(factory(i)) for i in range(b)] for b in inprocess_batches}
    for b, reqs in batch_reqs.items():  # warm-up at every batch size before any timed window
        assert all(x.error is None for x in runtime.handle(reqs))
    try:
        transport = TritonTransport("resnet_classifier", server.http_url, "http", timeout_s=600)
        stats = ServerStats(server.http_url, "http", "resnet_classifier")
        pids = _server_pids(server.proc.pid)
        run_concurrency_step(transport, factory, max(concurrencies), duration_s=600,
                             max_requests=2 * max(concurrencies), first_index=10_000)  # warm-up
        for r in range(rounds):
            for b, reqs in batch_reqs.items():
                ip = _inprocess_window(runtime, reqs, seconds)
                sweep[str(b)].append(ip)
                log(f"P1 round {r + 1}/{rounds} in-process batch {b}: {ip['ips']:.2f} img/s")
            for c in concurrencies:
                reqs = [_raw_request(factory(i)) for i in range(c)]
                ip = _inprocess_window(runtime, reqs, seconds)
                windows[str(c)]["inprocess"].append(ip)
                cpu0, own0 = _proc_cpu_s(pids), time.process_time()
                step = run_concurrency_step(transport, factory, c, duration_s=seconds, stats=stats)
                step.pop("_records", None)
                step["cpu_s_per_image"] = ((_proc_cpu_s(pids) - cpu0) + (time.process_time() - own0)) / max(step["ok"], 1)
                windows[str(c)]["served"].append(step)
                srv = step["server"] or {}
                log(f"P1 round {r + 1}/{rounds} batch/concurrency {c}: in-process {ip['ips']:.2f} img/s, "
                    f"served {step['throughput_rps']:.2f} img/s (avg batch {srv.get('avg_batch_size')}, "
                    f"p50 {step['latency_ms']['p50']} ms, errors {step['errors']})")
        transport.close()
        stats.close()
    finally:
        server.stop()
    del runtime
    by_c = {}
    for c, w in windows.items():
        ip_med = statistics.median(x["ips"] for x in w["inprocess"])
        sv_med = statistics.median(x["throughput_rps"] for x in w["served"])
        ip_cpu = statistics.median(x["cpu_s_per_image"] for x in w["inprocess"])
        sv_cpu = statistics.median(x["cpu_s_per_image"] for x in w["served"])
        by_c[c] = {"inprocess_ips": round(ip_med, 3), "served_ips": round(sv_med, 3),
                   "ratio": round(sv_med / ip_med, 3),
                   "inprocess_cpu_s_per_image": round(ip_cpu, 4), "served_cpu_s_per_image": round(sv_cpu, 4),
                   "cpu_efficiency_ratio": round(ip_cpu / sv_cpu, 3),
                   "served_avg_batch": [(s["server"] or {}).get("avg_batch_size") for s in w["served"]],
                   "served_p50_ms": [s["latency_ms"]["p50"] for s in w["served"]],
                   "served_queue_ms": [(s["server"] or {}).get("queue_ms") for s in w["served"]],
                   "inprocess_windows_ips": [round(x["ips"], 3) for x in w["inprocess"]],
                   "served_windows_ips": [round(s["throughput_rps"], 3) for s in w["served"]]}
    by_batch = {b: {"ips_median": round(statistics.median(x["ips"] for x in w), 3),
                    "cpu_s_per_image": round(statistics.median(x["cpu_s_per_image"] for x in w), 4),
                    "windows_ips": [round(x["ips"], 3) for x in w]} for b, w in sweep.items()}
    best_batch = max(by_batch, key=lambda b: by_batch[b]["ips_median"])
    best_served = max(v["served_ips"] for v in by_c.values())
    best_inproc = by_batch[best_batch]["ips_median"]
    ratio = best_served / best_inproc
    return {"id": "P1", "name": "served classifier throughput at saturation / best in-process batch (sweep 1-32)",
            "value": round(ratio, 3), "goal": ">= 0.85", "pass": ratio >= 0.85,
            "served_images_per_s": round(best_served, 3), "inprocess_images_per_s": round(best_inproc, 3),
            "inprocess_best_batch": int(best_batch), "inprocess_sweep": by_batch,
            "by_concurrency": by_c, "params": params, "rounds": rounds, "window_s": seconds,
            "model": f"ResNet-50 shape ({params / 1e6:.1f} M parameters, random weights), 224x224 after preprocessing",
            "images": "bench.loadtest payloads (sklearn sample photos as 256px JPEG, digits as PNG)",
            "threads": threads}


# -- P4 -----------------------------------------------------------------------------------
def ensure_tiny(model: str) -> Path:
    ckpt = ROOT / "model_repository" / model / "1" / "checkpoint"
    if not (ckpt / "model_index.json").exists() and not (ckpt / "config.json").exists():
        from serving.runtime.checkpoints.__main__ import main

        main(["tiny", "--repo", str(ROOT / "model_repository"), "--models", model])
    return ckpt


def queue_delay_ms(model: str) -> float:
    import re

    text = (ROOT / "model_repository" / model / "config.pbtxt").read_text()
    m = re.search(r"max_queue_delay_microseconds:\s*(\d+)", text)
    return int(m.group(1)) / 1000 if m else 0.0


def build_p4_repo(model: str, ckpt: Path, repo: Path = ROOT / "build" / "bench" / "p4-repository") -> Path:
    """`model` as shipped plus `<model>_nodelay`, a copy with max_queue_delay_microseconds 0, for
    one server: both directories link the same checkpoint and run the same model.py (the runtime
    is chosen by model.py, not by the served name), so only the queue delay differs."""
    import re

    src = ROOT / "model_repository" / model
    shutil.rmtree(repo, ignore_errors=True)
    shipped = (src / "config.pbtxt").read_text()
    nodelay = re.sub(r"max_queue_delay_microseconds:\s*\d+", "max_queue_delay_microseconds: 0",
                     shipped.replace(f'name: "{model}"', f'name: "{model}_nodelay"'))
    for name, config in ((model, shipped), (f"{model}_nodelay", nodelay)):
        dst = repo / name
        (dst / "1").mkdir(parents=True)
        (dst / "config.pbtxt").write_text(config)
        shutil.copy2(src / "1" / "model.py", dst / "1" / "model.py")
        (dst / "1" / "checkpoint").symlink_to(ckpt.resolve(), target_is_directory=True)
    return repo


def _concurrent(fn, n: int) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def go(k: int) -> None:
        try:
            barrier.wait()
            fn(k)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def _served_rounds(transport, stats, payloads, rounds: int, nodelay=None):
    """Interleaved rounds: all requests at once, the same one after another, and (given
    `nodelay`, a (transport, stats) pair) one after another on the no-delay copy. The order
    rotates every round so that no side always runs first or last: a shared machine's load
    drifts hit all alike. Also returns the server's mean queue and execute ms per request of
    each one-at-a-time round: the queue time shows the delay, execute time the machine's load."""
    conc, seq, nd_seq, batches = [], [], [], []
    server_ms: dict[str, list] = {"sequential": [], "sequential_nodelay": []}

    def together() -> None:
        before = stats.snapshot()
        t0 = time.perf_counter()
        _concurrent(lambda k: transport.send(payloads[k]), len(payloads))
        conc.append(time.perf_counter() - t0)
        batches.append((server_delta(before, stats.snapshot()) or {}).get("avg_batch_size"))

    def one_at_a_time(t, st, out: list[float], key: str) -> None:
        before = st.snapshot()
        t0 = time.perf_counter()
        for p in payloads:
            t.send(p)
        out.append(time.perf_counter() - t0)
        d = server_delta(before, st.snapshot()) or {}
        server_ms[key].append({"queue_ms": d.get("queue_ms"), "execute_ms": d.get("compute_infer_ms")})

    sides = [together, lambda: one_at_a_time(transport, stats, seq, "sequential")]
    if nodelay is not None:
        sides.append(lambda: one_at_a_time(*nodelay, nd_seq, "sequential_nodelay"))
    for r in range(rounds):
        for side in sides[r % len(sides):] + sides[:r % len(sides)]:
            side()
    return conc, seq, nd_seq, batches, server_ms


def run_p4(steps: int = 20, rounds: int = 5, threads: int = 2, n: int = 4) -> dict[str, Any]:
    import torch

    ckpt = ensure_tiny("sd_img2img")
    factory = PayloadFactory("sd_img2img", inference_steps=steps, image_size=64, seed=11)
    payloads = [factory(i) for i in range(n)]

    # In-process cross-check first (server not running).
    from serving.runtime.device import DeviceSpec
    from serving.runtime.models import runtime_class

    torch.set_num_threads(threads)
    rt = runtime_class("sd_img2img")(str(ckpt), DeviceSpec("cpu", torch.float32), max_pipeline_batch=n)
    rt.load()
    reqs = [_raw_request(p) for p in payloads]
    assert all(r.error is None for r in rt.handle(reqs))  # warm-up
    ip_batched, ip_seq = [], []
    for _ in range(rounds):
        calls = rt.pipeline_calls
        t0 = time.perf_counter()
        res = rt.handle(reqs)
        ip_batched.append(time.perf_counter() - t0)
        assert rt.pipeline_calls - calls == 1 and all(r.error is None for r in res)
        t0 = time.perf_counter()
        for r in reqs:
            assert rt.handle([r])[0].error is None
        ip_seq.append(time.perf_counter() - t0)
    del rt
    ip_ratio = statistics.median(ip_seq) / statistics.median(ip_batched)
    log(f"P4 in-process: 4 batched {statistics.median(ip_batched) * 1000:.0f} ms, "
        f"4 one by one {statistics.median(ip_seq) * 1000:.0f} ms, ratio {ip_ratio:.2f}")

    mixed = PayloadFactory("sd_img2img", inference_steps=steps, image_size=64, seed=11, negative_prompt="mixed")
    # One server, two model names: the shipped config and a copy without the queue delay (the
    # baseline a lone-request path would give; the 4-together side keeps the shipped config).
    nodelay = "sd_img2img_nodelay"
    repo = build_p4_repo("sd_img2img", ckpt)
    server = start_server(repo, ("sd_img2img", nodelay), threads, "p4-tritonserver.log")
    try:
        transport = TritonTransport("sd_img2img", server.http_url, "http", timeout_s=600)
        nd_transport = TritonTransport(nodelay, server.http_url, "http", timeout_s=600)
        stats = ServerStats(server.http_url, "http", "sd_img2img")
        nd_stats = ServerStats(server.http_url, "http", nodelay)
        for p in payloads:  # warm-up
            transport.send(p)
            nd_transport.send(p)
        _concurrent(lambda k: transport.send(payloads[k]), n)
        conc, seq, nd_seq, batches, server_ms = _served_rounds(transport, stats, payloads, rounds,
                                                               (nd_transport, nd_stats))
        mixed_payloads = [mixed(i) for i in range(n)]
        m_conc, m_seq, _, m_batches, _ = _served_rounds(transport, stats, mixed_payloads, max(2, rounds // 2))
        transport.close()
        nd_transport.close()
        stats.close()
        nd_stats.close()
    finally:
        server.stop()
    ratio_nodelay = statistics.median(nd_seq) / statistics.median(conc)
    log(f"P4 served, one at a time without the queue delay: {statistics.median(nd_seq) * 1000:.0f} ms, "
        f"ratio {ratio_nodelay:.2f}")
    ratio = statistics.median(seq) / statistics.median(conc)
    log(f"P4 served: 4 concurrent {statistics.median(conc) * 1000:.0f} ms (avg batch {batches}), "
        f"4 one at a time {statistics.median(seq) * 1000:.0f} ms, ratio {ratio:.2f}")
    return {"id": "P4", "name": "SD throughput, 4 compatible concurrent requests batched / one at a time",
            "value": round(ratio, 3), "goal": ">= 1.5", "pass": ratio >= 1.5,
            "value_without_delay": round(ratio_nodelay, 3), "pass_without_delay": ratio_nodelay >= 1.5,
            "queue_delay_ms": queue_delay_ms("sd_img2img"),
            "nodelay_model": nodelay, "interleaved": "one server; each round: 4 together, 4 one at a time, "
                                                     "4 one at a time on the no-delay copy, order rotated per round",
            "sequential_nodelay_s": [round(x, 4) for x in nd_seq],
            "median_sequential_nodelay_s": round(statistics.median(nd_seq), 4),
            "model": f"tiny sd_img2img, 64x64 img2img, {steps} steps (strength 0.75 -> {int(steps * 0.75)} denoising steps)",
            "rounds": rounds, "threads": threads,
            "served": {"concurrent_s": [round(x, 4) for x in conc], "sequential_s": [round(x, 4) for x in seq],
                       "median_concurrent_s": round(statistics.median(conc), 4),
                       "median_sequential_s": round(statistics.median(seq), 4), "avg_batch_size": batches,
                       "server_ms_per_request": server_ms},
            "inprocess": {"batched_s": [round(x, 4) for x in ip_batched], "sequential_s": [round(x, 4) for x in ip_seq],
                          "ratio": round(ip_ratio, 3)},
            "mixed_inputs": {"concurrent_s": [round(x, 4) for x in m_conc], "sequential_s": [round(x, 4) for x in m_seq],
                             "avg_batch_size": m_batches,
                             "ratio": round(statistics.median(m_seq) / statistics.median(m_conc), 3)}}


if __name__ == "__main__":  # quick manual run of one part: python bench/served.py p1|p4
    which = sys.argv[1] if len(sys.argv) > 1 else "p4"
    print(json.dumps(run_p1(seconds=5, rounds=1) if which == "p1" else run_p4(rounds=2), indent=2))
    os._exit(0)
