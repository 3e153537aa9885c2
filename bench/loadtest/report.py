"""Write a run's report: `report.json`, `steps.csv`, `requests.csv`, `latency.png` and, for open-loop
runs, `overload.png` (offered load vs goodput, refusals vs timeouts, work done for nobody)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

STEP_COLUMNS = (
    "mode", "concurrency", "target_rps", "arrival", "duration_s", "sent", "completed", "ok", "errors",
    "throughput_rps", "completed_rps", "max_in_flight",
    "latency_p50_ms", "latency_p90_ms", "latency_p95_ms", "latency_p99_ms", "latency_mean_ms", "latency_max_ms",
    "service_p50_ms", "service_p99_ms", "max_send_lag_ms", "mean_send_lag_ms", "scheduled", "not_sent",
    "server_queue_ms", "server_compute_input_ms", "server_compute_infer_ms", "server_compute_output_ms",
    "server_request_ms", "server_avg_batch_size", "server_success_count", "server_fail_count",
    "errors_by_kind", "interrupted",
    "refused", "timeouts", "refused_attempts", "refusal_p50_ms", "refusal_p99_ms", "ok_after_retry",
    "work_for_nobody", "work_for_nobody_fraction", "queued_at_end", "drained_after_load_s",
)
REQUEST_COLUMNS = ("step", "index", "scheduled_ms", "start_ms", "latency_ms", "service_ms", "error", "injected",
                   "attempts")


def public_steps(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in s.items() if not k.startswith("_")} for s in steps]


def step_row(step: dict[str, Any]) -> dict[str, Any]:
    lat = step.get("latency_ms") or {}
    svc = step.get("service_latency_ms") or {}
    srv = step.get("server") or {}
    row = {k: step.get(k) for k in STEP_COLUMNS}
    row.update({f"latency_{k}_ms": lat.get(k) for k in ("p50", "p90", "p95", "p99", "mean", "max")})
    row.update(service_p50_ms=svc.get("p50"), service_p99_ms=svc.get("p99"))
    for k in ("queue_ms", "compute_input_ms", "compute_infer_ms", "compute_output_ms", "request_ms"):
        row[f"server_{k}"] = srv.get(k)
    row.update(server_avg_batch_size=srv.get("avg_batch_size"), server_success_count=srv.get("success_count"),
               server_fail_count=srv.get("fail_count"))
    row["errors_by_kind"] = ";".join(f"{k}={v}" for k, v in (step.get("errors_by_kind") or {}).items())
    ov = step.get("overload") or {}
    for k in ("refused", "timeouts", "refused_attempts", "ok_after_retry", "work_for_nobody", "work_for_nobody_fraction"):
        row[k] = ov.get(k)
    rl = ov.get("refusal_latency_ms") or {}
    row.update(refusal_p50_ms=rl.get("p50"), refusal_p99_ms=rl.get("p99"))
    q = step.get("queue_after") or {}
    row.update(queued_at_end=q.get("pending_at_end"), drained_after_load_s=q.get("drained_after_load_s"))
    return row


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_report(out_dir: Path, report: dict[str, Any], plot: bool = True) -> dict[str, Path]:
    """Write every file; safe to call after each step (files are replaced atomically)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    steps = report.get("steps", [])
    doc = dict(report, steps=public_steps(steps))
    paths = {"json": out_dir / "report.json", "csv": out_dir / "steps.csv", "requests": out_dir / "requests.csv"}
    _atomic_write(paths["json"], json.dumps(doc, indent=2, sort_keys=False) + "\n")

    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=STEP_COLUMNS)
    w.writeheader()
    for s in steps:
        w.writerow(step_row(s))
    _atomic_write(paths["csv"], buf.getvalue())

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=REQUEST_COLUMNS)
    w.writeheader()
    for n, s in enumerate(steps):
        for r in s.get("_records", []):
            w.writerow({"step": n, **{k: r.get(k) for k in REQUEST_COLUMNS if k != "step"}})
    _atomic_write(paths["requests"], buf.getvalue())

    if plot:
        paths["png"] = out_dir / "latency.png"
        plot_latency(steps, paths["png"], title=report.get("title", ""))
        if any(st.get("mode") == "rate" for st in steps):
            paths["overload_png"] = out_dir / "overload.png"
            plot_overload(steps, paths["overload_png"], title=report.get("title", ""))
    return paths


def plot_overload(steps: list[dict[str, Any]], path: Path, title: str = "") -> None:
    """Open-loop steps: offered rate vs goodput (and server successes), and per step the requests
    refused, timed out at the client, and computed for nobody."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [st for st in steps if st.get("mode") == "rate"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=100)
    offered = [st["target_rps"] for st in pts]
    a1.plot(offered, [st["throughput_rps"] for st in pts], "o-", label="goodput (client ok/s)")
    srv = [((st.get("server") or {}).get("success_count") or 0) / max(st["duration_s"], 1e-9) for st in pts]
    if any(srv):
        a1.plot(offered, srv, "s--", label="server successes/s")
    top = max(offered + [1.0])
    a1.plot([0, top], [0, top], ":", color="grey", label="offered")
    a1.set_xlabel("offered load (requests/s)")
    a1.set_ylabel("requests/s")
    a1.set_title("offered vs goodput")
    a1.grid(True, alpha=0.3)
    a1.legend(fontsize=8)
    labels = [f"{st['target_rps']:g}/s" for st in pts]
    x = list(range(len(pts)))
    width = 0.27
    for i, (key, name) in enumerate((("refused", "refused (after retries)"), ("timeouts", "client timeouts"),
                                     ("work_for_nobody", "computed for nobody"))):
        a2.bar([v + (i - 1) * width for v in x], [(st.get("overload") or {}).get(key) or 0 for st in pts],
               width, label=name)
    a2.set_xticks(x)
    a2.set_xticklabels(labels)
    a2.set_xlabel("offered load")
    a2.set_ylabel("requests")
    a2.set_title("refusals vs timeouts vs work for nobody")
    a2.grid(True, axis="y", alpha=0.3)
    a2.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def plot_latency(steps: list[dict[str, Any]], path: Path, title: str = "") -> None:
    """Latency (p50, p90, p99) against achieved throughput, one point per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    pts = [s for s in steps if (s.get("latency_ms") or {}).get("p50") is not None]
    x = [s["throughput_rps"] for s in pts]
    for key, style in (("p50", "o-"), ("p90", "s--"), ("p99", "^:")):
        ax.plot(x, [s["latency_ms"][key] for s in pts], style, label=key)
    for s in pts:
        tag = f"c={s['concurrency']}" if s.get("concurrency") else f"{s.get('target_rps')}/s"
        ax.annotate(tag, (s["throughput_rps"], s["latency_ms"]["p50"]), textcoords="offset points",
                    xytext=(4, 4), fontsize=8)
    ax.set_xlabel("throughput (successful requests/s)")
    ax.set_ylabel("latency (ms)")
    ax.set_title(title or "latency vs throughput")
    ax.grid(True, alpha=0.3)
    if pts:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no successful requests", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
