"""Build time and size of the cross-target execution env (docs/env.md's table).

    python bench/env_build.py [--triton-version 26.05] [--skip-no-torch]

Runs env/build_env.py twice for the target, each in a fresh work dir: `--resolve-only` (the
full GPU env: resolution and tag check, nothing downloaded) and `--variant no-torch` (download,
install, compiled-file check and pack of everything but torch and its CUDA wheels). Writes
bench/results/env-build-<date>.json. Wall times include the network: compare runs on one
machine and one network only.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _build(work: Path, triton_version: str, *extra: str) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, str(ROOT / "env" / "build_env.py"), "--method", "pip",
                    "--triton-version", triton_version, "--out", str(work / "python_env.tar.gz"),
                    "--work-dir", str(work / "env"), *extra], check=True, stdout=subprocess.DEVNULL)
    return round(time.monotonic() - started, 1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--triton-version", default="26.05")
    p.add_argument("--skip-no-torch", action="store_true")
    args = p.parse_args(argv)
    result: dict = {"triton_version": args.triton_version, "date": datetime.date.today().isoformat(),
                    "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "resolve"
        seconds = _build(work, args.triton_version, "--resolve-only")
        report = json.loads((work / "python_env.resolution.json").read_text())
        result["resolve_only"] = {"seconds": seconds, "wheels": len(report["wheels"]), "torch": report["torch"],
                                  "cuda": report["cuda"], "platform": report["platform"]}
        if not args.skip_no_torch:
            work = Path(tmp) / "no-torch"
            seconds = _build(work, args.triton_version, "--variant", "no-torch")
            tarball = work / "python_env.tar.gz"
            with tarfile.open(tarball) as tar:
                info = json.loads(tar.extractfile("python_env.json").read())
                unpacked = sum(m.size for m in tar.getmembers() if m.isfile())
            result["no_torch"] = {"seconds": seconds, "wheels": len(info["distributions"]),
                                  "left_out": info["left_out"], "tar_gz_mib": round(tarball.stat().st_size / 2**20, 1),
                                  "unpacked_mb": round(unpacked / 1e6)}
            shutil.rmtree(work)
    out = ROOT / "bench" / "results" / f"env-build-{result['date']}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
