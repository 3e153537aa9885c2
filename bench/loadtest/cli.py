r"""`python -m bench.loadtest MODEL [options]`: sweep a served model and write a report.

Examples:

    # closed loop (concurrency sweep), Triton HTTP on loopback, 10 s per step
    python -m bench.loadtest resnet_classifier --concurrency 1,4,16 --out var/loadtest/rn
    # open loop, Poisson arrivals at 2, 4 and 8 requests/s, gRPC, 10 inference steps, 5% bad
    python -m bench.loadtest sd_img2img --protocol grpc --rate 2,4,8 --arrival poisson \
        --inference-steps 10 --bad-fraction 0.05 --out var/loadtest/img2img
    # SageMaker InvokeEndpoint on the local MME endpoint (or a real one: drop --endpoint-url)
    python -m bench.loadtest sd_depth --protocol sagemaker --endpoint-name local \
        --endpoint-url http://127.0.0.1:8080 --concurrency 1,2

Ctrl-C stops sending, waits for requests in flight, writes the partial report and exits 130.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from serving import MODEL_NAMES
from bench.loadtest.payloads import PayloadFactory
from bench.loadtest.report import write_report
from bench.loadtest.runner import (MAX_CONCURRENCY, MAX_RATE, MAX_REQUESTS_PER_STEP, Recorder,
                                   run_concurrency_step, run_rate_step)

EXIT_INTERRUPTED = 130


def _int_list(text: str) -> list[int]:
    vals = [int(v) for v in text.split(",") if v.strip()]
    if not vals or any(not 1 <= v <= MAX_CONCURRENCY for v in vals):
        raise argparse.ArgumentTypeError(f"a comma-separated list of integers in [1, {MAX_CONCURRENCY}]")
    return vals


def _float_list(text: str) -> list[float]:
    vals = [float(v) for v in text.split(",") if v.strip()]
    if not vals or any(not 0 < v <= MAX_RATE for v in vals):
        raise argparse.ArgumentTypeError(f"a comma-separated list of rates in (0, {MAX_RATE}] requests/s")
    return vals


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.loadtest", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", choices=MODEL_NAMES)
    g = p.add_argument_group("target")
    g.add_argument("--protocol", choices=["http", "grpc", "sagemaker"], default="http")
    g.add_argument("--url", help="Triton host:port (default 127.0.0.1:8000 http, 127.0.0.1:8001 grpc)")
    g.add_argument("--endpoint-name", help="SageMaker endpoint name (--protocol sagemaker)")
    g.add_argument("--endpoint-url", help="sagemaker-runtime URL, e.g. http://127.0.0.1:8080 for the local "
                                          "MME endpoint (default: the real AWS endpoint of --region)")
    g.add_argument("--region", help="AWS region (default from the environment; us-east-1 for a local endpoint)")
    g.add_argument("--target-model", help="MME TargetModel (default: the current version in --model-data-url's "
                                          "aliases.json, else <model>.tar.gz)")
    g.add_argument("--model-data-url", help="s3://BUCKET/PREFIX/ of the endpoint: resolve <model> to its current "
                                            "version there (deploy update writes aliases.json)")
    g.add_argument("--s3-endpoint-url", help="S3 endpoint for --model-data-url (moto, tests)")
    g.add_argument("--json-body", action="store_true",
                   help="SageMaker: send JSON bodies with base64 images instead of binary+json")
    g.add_argument("--stats-url", help="Triton HTTP host:port for server-side statistics "
                                       "(default: the --url in http/grpc mode; none for sagemaker)")
    g.add_argument("--no-server-stats", action="store_true", help="do not query Triton's statistics API")
    g.add_argument("--timeout", type=float, default=120.0,
                   help="per-request deadline, seconds (default 120): sent with the request (deadline_ms and "
                        "Triton's queue timeout) so the server drops it once the caller has given up")
    g.add_argument("--no-retry", action="store_true",
                   help="do not retry refusals (UNAVAILABLE/503); by default they are retried with jittered "
                        "backoff within --timeout")
    g.add_argument("--no-deadline", action="store_true",
                   help="do not send the deadline with requests (the behaviour of clients that do not)")
    g.add_argument("--metrics-url", help="Triton metrics host:port, for the queue after each step "
                                         "(default: the --url host on port 8002 when --url uses 8000/8001)")
    g.add_argument("--segment", action="append", default=[], metavar="NAME=VALUE",
                   help="segment attribute sent with every request (request parameter segment.NAME; repeatable)")
    m = p.add_argument_group("load")
    mode = m.add_mutually_exclusive_group()
    mode.add_argument("--concurrency", type=_int_list, help="closed loop: concurrency levels, e.g. 1,2,4,8 "
                                                            "(the default mode, with 1,2,4,8)")
    mode.add_argument("--rate", type=_float_list, help="open loop: arrival rates in requests/s, e.g. 1,2,4")
    m.add_argument("--arrival", choices=["constant", "poisson"], default="constant", help="open-loop arrivals")
    m.add_argument("--duration", type=float, default=None,
                   help="seconds per step (default 10; with --requests only, up to --max-time)")
    m.add_argument("--requests", type=int, default=None, help="at most this many requests per step")
    m.add_argument("--warmup", type=int, default=0, help="unrecorded requests sent before the first step")
    m.add_argument("--max-workers", type=int, default=128, help="open loop: sender threads (default 128)")
    m.add_argument("--max-time", type=float, default=900.0, help="hard limit on the whole run, seconds (default 900)")
    d = p.add_argument_group("payloads")
    d.add_argument("--inference-steps", type=int, default=4, help="gen_args.num_inference_steps (SD models)")
    d.add_argument("--image-size", type=int, default=None,
                   help="square input side (default 64; sd_upscale 32; resnet_classifier 256)")
    d.add_argument("--text2img", action="store_true", help="sd_img2img without an input image")
    d.add_argument("--negative-prompt", choices=["always", "mixed", "never"], default="always",
                   help="SD models: send a negative prompt with every request (default), every other one, "
                        "or never. Triton batches only requests with the same set of inputs")
    d.add_argument("--bad-fraction", type=float, default=0.0,
                   help="fraction of deliberately bad requests (undecodable image, invalid gen_args)")
    d.add_argument("--seed", type=int, default=0, help="payload and Poisson-arrival seed")
    o = p.add_argument_group("output")
    o.add_argument("--out", type=Path, default=None, help="report directory (default var/loadtest/<model>-<time>)")
    o.add_argument("--no-plot", action="store_true")
    o.add_argument("--quiet", action="store_true", help="no live progress")
    o.add_argument("--progress-interval", type=float, default=1.0)
    return p


def make_transport(args: argparse.Namespace):
    from bench.loadtest.transports import SageMakerTransport, TritonTransport

    segments = {}
    for spec in getattr(args, "segment", None) or []:
        name, sep, value = spec.partition("=")
        if not sep or not name:
            raise SystemExit(f"error: --segment {spec!r}: expected NAME=VALUE")
        segments[name] = value

    if args.protocol == "sagemaker":
        if not args.endpoint_name:
            raise SystemExit("error: --protocol sagemaker needs --endpoint-name")
        workers = max(args.concurrency or [1]) if args.concurrency else args.max_workers
        target = args.target_model
        if target is None and args.model_data_url:
            from deploy.aws import AwsContext
            from deploy.versions import resolve_url

            s3 = AwsContext(region=args.region, service_endpoints={"s3": args.s3_endpoint_url} if args.s3_endpoint_url
                            else {}).client("s3")
            target = resolve_url(s3, args.model_data_url, args.model)
        return SageMakerTransport(args.model, args.endpoint_name, endpoint_url=args.endpoint_url,
                                  region=args.region, target_model=target, binary=not args.json_body,
                                  timeout_s=args.timeout, max_connections=min(max(workers, 10), 512),
                                  retry=retry_policy(args), send_deadline=not args.no_deadline, segments=segments)
    return TritonTransport(args.model, args.url, args.protocol, timeout_s=args.timeout, retry=retry_policy(args),
                           send_deadline=not args.no_deadline, segments=segments)


def retry_policy(args: argparse.Namespace):
    from serving.common.retry import NO_RETRY, RetryPolicy

    return NO_RETRY if args.no_retry else RetryPolicy()


def metrics_url(args: argparse.Namespace) -> str | None:
    if args.metrics_url:
        return args.metrics_url
    url = args.stats_url or args.url
    if args.protocol == "sagemaker" and not args.stats_url or not url:
        return None
    host, _, port = url.rpartition(":")
    return f"{host}:8002" if port in ("8000", "8001") else None


def make_queue_probe(args: argparse.Namespace, stats):
    from bench.loadtest.stats import QueueProbe

    url = metrics_url(args)
    return QueueProbe(url, args.model, stats) if url else None


def make_stats(args: argparse.Namespace):
    from bench.loadtest.stats import ServerStats

    if args.no_server_stats:
        return None
    if args.stats_url:
        return ServerStats(args.stats_url, "http", args.model)
    if args.protocol in ("http", "grpc"):
        return ServerStats(args.url, args.protocol, args.model)
    return None


def check_ready(args: argparse.Namespace) -> str | None:
    """A reason the Triton target cannot be load-tested, or None."""
    if args.protocol == "sagemaker":
        return None
    try:
        if args.protocol == "grpc":
            import tritonclient.grpc as tc
        else:
            import tritonclient.http as tc
        client = tc.InferenceServerClient(url=args.url)
        try:
            if not client.is_model_ready(args.model):
                return f"model {args.model} is not ready on {args.url}"
        finally:
            client.close()
    except Exception as exc:
        return f"cannot reach Triton at {args.url} ({args.protocol}): {exc}"
    return None


class Progress:
    """Prints the current step's counters every `interval` seconds to stderr."""

    def __init__(self, interval: float, quiet: bool):
        self.interval, self.quiet = interval, quiet
        self.recorder: Recorder | None = None
        self.label = ""
        self._done = threading.Event()
        self._tty = sys.stderr.isatty()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="loadtest-progress")

    def start(self) -> None:
        if not self.quiet:
            self._thread.start()

    def _loop(self) -> None:
        while not self._done.wait(self.interval):
            rec = self.recorder
            if rec is None:
                continue
            p = rec.progress()
            p50 = f"{p['p50_ms']:.1f} ms" if p["p50_ms"] is not None else "-"
            line = (f"progress [{self.label}] {p['elapsed_s']:6.1f}s sent={p['sent']} ok={p['ok']} "
                    f"err={p['errors']} in_flight={p['in_flight']} {p['rps']:.2f} req/s p50={p50}")
            sys.stderr.write(("\r" + line + "   ") if self._tty else line + "\n")
            sys.stderr.flush()

    def stop(self) -> None:
        self._done.set()
        if self._tty and not self.quiet:
            sys.stderr.write("\n")


def summary_line(step: dict[str, Any]) -> str:
    lat = step["latency_ms"]
    fmt = lambda v: f"{v:.1f}" if v is not None else "-"  # noqa: E731
    tag = f"c={step['concurrency']}" if step["mode"] == "concurrency" else f"rate={step['target_rps']}/s"
    srv = step.get("server") or {}
    extra = ""
    if srv:
        extra = (f" | server queue {fmt(srv.get('queue_ms'))} ms, infer {fmt(srv.get('compute_infer_ms'))} ms, "
                 f"batch {fmt(srv.get('avg_batch_size'))}")
    if step["mode"] == "rate":
        extra += f" | max send lag {fmt(step.get('max_send_lag_ms'))} ms"
    ov = step.get("overload") or {}
    if ov:
        rl = ov.get("refusal_latency_ms") or {}
        extra += (f" | refused {ov['refused']} (attempts refused {ov['refused_attempts']}, p50 {fmt(rl.get('p50'))} ms)"
                  f" timeouts {ov['timeouts']}")
        if ov.get("work_for_nobody") is not None:
            extra += f", work for nobody {ov['work_for_nobody']} of {ov['server_successes']}"
    q = step.get("queue_after") or {}
    if q:
        extra += f" | queued at end {q.get('pending_at_end')}, drained {fmt(q.get('drained_after_load_s'))} s after the load"
    errs = ", ".join(f"{k}={v}" for k, v in step["errors_by_kind"].items()) or "none"
    return (f"{tag:>12}: {step['throughput_rps']:.2f} req/s  sent {step['sent']} ok {step['ok']} "
            f"errors {step['errors']} ({errs})  latency p50 {fmt(lat['p50'])} p90 {fmt(lat['p90'])} "
            f"p95 {fmt(lat['p95'])} p99 {fmt(lat['p99'])} ms{extra}"
            + ("  [interrupted]" if step["interrupted"] else ""))


def run(args: argparse.Namespace) -> int:
    if args.protocol in ("http", "grpc") and not args.url:
        args.url = "127.0.0.1:8001" if args.protocol == "grpc" else "127.0.0.1:8000"
    if args.concurrency is None and args.rate is None:
        args.concurrency = [1, 2, 4, 8]
    if args.requests is not None and not 1 <= args.requests <= MAX_REQUESTS_PER_STEP:
        raise SystemExit(f"error: --requests must be within [1, {MAX_REQUESTS_PER_STEP}]")
    if args.duration is None:
        args.duration = args.max_time if args.requests else 10.0
    if args.duration <= 0 or args.max_time <= 0:
        raise SystemExit("error: --duration and --max-time must be positive")
    out = args.out or Path("var/loadtest") / f"{args.model}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    payloads = PayloadFactory(args.model, image_size=args.image_size, inference_steps=args.inference_steps,
                              bad_fraction=args.bad_fraction, seed=args.seed, text2img=args.text2img,
                              negative_prompt=args.negative_prompt)
    reason = check_ready(args)
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 1
    try:
        transport = make_transport(args)
        stats = make_stats(args)
        probe = make_queue_probe(args, stats)
    except Exception as exc:  # e.g. no AWS region for a real endpoint
        print(f"error: {exc}", file=sys.stderr)
        return 1

    stop = threading.Event()
    interrupts = [0]

    def on_sigint(signum, frame):  # noqa: ARG001
        interrupts[0] += 1
        if interrupts[0] > 1:
            sys.stderr.write("\nsecond interrupt: exiting without waiting for requests in flight\n")
            os._exit(EXIT_INTERRUPTED)
        sys.stderr.write("\ninterrupt: finishing requests in flight, then writing the partial report "
                         "(Ctrl-C again to quit at once)\n")
        # Event.set takes a lock the interrupted main thread may hold: set it from another thread.
        threading.Thread(target=stop.set, daemon=True).start()

    previous = {s: signal.signal(s, on_sigint) for s in (signal.SIGINT, signal.SIGTERM)}
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    report: dict[str, Any] = {
        "tool": "bench.loadtest", "format": 1, "model": args.model, "protocol": args.protocol,
        "target": args.url if args.protocol != "sagemaker" else (args.endpoint_url or "aws") + f"/{args.endpoint_name}",
        "title": f"{args.model} over {args.protocol}",
        "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "finished_at": None, "interrupted": False, "truncated": None, "config": config,
        "host": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                 "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
        "steps": [],
    }
    progress = Progress(args.progress_interval, args.quiet)
    progress.start()
    run_deadline = time.monotonic() + args.max_time
    plot = not args.no_plot
    next_index = 0
    print(f"load test: {args.model} via {args.protocol} -> {report['target']}; report in {out}", flush=True)
    try:
        if args.warmup > 0 and not stop.is_set():
            progress.label, progress.recorder = "warmup", Recorder()
            run_concurrency_step(transport, payloads, min(args.warmup, max(args.concurrency or [4])),
                                 duration_s=min(args.duration, args.max_time), max_requests=args.warmup,
                                 first_index=10_000_000, stop=stop, recorder=progress.recorder)
        levels = args.concurrency or args.rate
        for n, level in enumerate(levels):
            if stop.is_set():
                break
            remaining = run_deadline - time.monotonic()
            if remaining <= 0:
                report["truncated"] = f"--max-time {args.max_time:g}s reached before step {n + 1}"
                break
            duration = min(args.duration, remaining)
            recorder = Recorder()
            progress.recorder = recorder
            if args.concurrency:
                progress.label = f"step {n + 1}/{len(levels)} c={level}"
                step = run_concurrency_step(transport, payloads, int(level), duration_s=duration,
                                            max_requests=args.requests, first_index=next_index, stop=stop,
                                            stats=stats, recorder=recorder,
                                            settle=probe.settle if probe else None)
            else:
                progress.label = f"step {n + 1}/{len(levels)} rate={level}/s"
                step = run_rate_step(transport, payloads, float(level), duration_s=duration,
                                     max_requests=args.requests, arrival=args.arrival, seed=args.seed + n,
                                     max_workers=args.max_workers, first_index=next_index, stop=stop,
                                     stats=stats, recorder=recorder, settle=probe.settle if probe else None)
            next_index += step["sent"] + step.get("not_sent", 0)
            report["steps"].append(step)
            print(summary_line(step), flush=True)
            write_report(out, report, plot=plot)
    finally:
        progress.stop()
        for s, h in previous.items():
            signal.signal(s, h)
        report["interrupted"] = stop.is_set()
        report["finished_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        report["host"]["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
        paths = write_report(out, report, plot=plot)
        transport.close()
        if stats:
            stats.close()
    print("wrote " + ", ".join(str(p) for p in paths.values()), flush=True)
    if stop.is_set():
        print("interrupted: the report is partial", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0.0 <= args.bad_fraction <= 1.0:
        raise SystemExit("error: --bad-fraction must be within [0, 1]")
    return run(args)
