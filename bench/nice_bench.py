"""Does a niceness-19 process yield the cores? A busy loop at niceness 19 next to a two-thread
workload (two numpy matmul threads, one BLAS thread each), in four placements, interleaved:

* ``alone``: no busy process (the workload's own rate);
* ``same session``: the busy process in the workload's session;
* ``own session``: in a session of its own (``start_new_session``), as the model processes start
  the capture sidecar (serving/runtime/host_services.py);
* ``own session + autogroup 19``: the same, its autogroup reniced (monitoring/capture/priority.py
  ``renice_autogroup``, what the sidecar now does at start).

On a Linux host with autogroups (``/proc/sys/kernel/sched_autogroup_enabled`` = 1, processes in the
root CPU cgroup) the scheduler shares a core between sessions first and by niceness only within
one, so niceness alone does not make a process in another session yield.

    python bench/nice_bench.py [--rounds 3] [--seconds 3] [--tag=-b]
"""

from __future__ import annotations

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"  # before numpy: one BLAS thread per workload thread
os.environ["OMP_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

# The busy process: renices itself as the sidecar does (all of priority.renice_process, or only
# the per-thread part), says so on stdout, then spins.
_BUSY = """
import os, sys
sys.path.insert(0, {root!r})
from monitoring.capture import priority
if sys.argv[1] == "autogroup":
    priority.renice_process(19)
else:
    os.setpriority(os.PRIO_PROCESS, 0, 19)
print(open(priority.AUTOGROUP_PATH).read().split()[-1] if os.path.exists(priority.AUTOGROUP_PATH) else "-", flush=True)
while True:
    pass
"""

PLACEMENTS = (("alone", None, False), ("same session", "thread", False), ("own session", "thread", True),
              ("own session + autogroup 19", "autogroup", True))


def workload(seconds: float, threads: int = 2) -> float:
    """Matmuls per second summed over ``threads`` threads (numpy releases the GIL in them)."""
    a = np.random.default_rng(0).random((400, 400))
    counts: list[int] = []

    def loop() -> None:
        end, n = time.perf_counter() + seconds, 0
        while time.perf_counter() < end:
            a @ a
            n += 1
        counts.append(n)

    pool = [threading.Thread(target=loop) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(counts) / seconds


def one(mode: str | None, new_session: bool, seconds: float) -> tuple[float, str]:
    if mode is None:
        return workload(seconds), ""
    busy = subprocess.Popen([sys.executable, "-c", _BUSY.format(root=str(ROOT)), mode], stdout=subprocess.PIPE,
                            text=True, start_new_session=new_session)
    try:
        group_nice = busy.stdout.readline().strip()  # it has reniced itself and is about to spin
        return workload(seconds), group_nice
    finally:
        busy.kill()
        busy.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--tag", default="")
    a = p.parse_args(argv)
    rates: dict[str, list[float]] = {name: [] for name, _, _ in PLACEMENTS}
    group: dict[str, str] = {}
    for r in range(a.rounds):
        order = PLACEMENTS if r % 2 == 0 else PLACEMENTS[::-1]
        for name, mode, new_session in order:
            rate, group[name] = one(mode, new_session, a.seconds)
            rates[name].append(rate)
            print(f"round {r + 1}/{a.rounds} {name}: {rate:.0f} matmuls/s", flush=True)
    alone = float(np.median(rates["alone"]))
    try:
        enabled = Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip()
    except OSError:
        enabled = "absent"
    results = {name: {"rates": v, "median": float(np.median(v)), "share_of_alone": float(np.median(v)) / alone,
                      "busy_autogroup_nice": group.get(name, "")} for name, v in rates.items()}
    date = dt.datetime.now(dt.timezone.utc).date().isoformat()
    report = {"benchmark": "niceness 19 across sessions", "date": date, "cpu_count": os.cpu_count(),
              "kernel": os.uname().release, "sched_autogroup_enabled": enabled, "rounds": a.rounds,
              "seconds": a.seconds, "results": results}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / f"nice-autogroup-{date}{a.tag}.json").write_text(json.dumps(report, indent=2))
    lines = [f"# Niceness 19 across sessions — {date}", "",
             f"A busy loop at niceness 19 next to a two-thread numpy workload on {os.cpu_count()} cores; kernel "
             f"{os.uname().release}, `sched_autogroup_enabled` {enabled}; {a.rounds} interleaved rounds of "
             f"{a.seconds:g} s (bench/nice_bench.py).", "",
             "| busy process | workload matmuls/s (median) | share of alone | busy process's autogroup nice |",
             "|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['median']:.0f} | {r['share_of_alone']:.2f} | {r['busy_autogroup_nice'] or 'no busy process'} |")
    text = "\n".join(lines) + "\n"
    (a.out / f"nice-autogroup-{date}{a.tag}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
