"""Write a run's report: `report.json`, `steps.csv`, `requests.csv` and `latency.png`."""

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
)
REQUEST_COLUMNS = ("step", "index", "scheduled_ms", "start_ms", "latency_ms", "service_ms", "error", "injected")


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
    return paths


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
