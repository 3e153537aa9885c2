"""``python -m monitoring.ingest.sidecar``: the sidecar alone, without importing every other command.

``python -m monitoring sidecar`` builds the full command registry (scoring, reports: pandas,
scikit-learn); the model execution env ships only what the sidecar needs (pyarrow, boto3,
prometheus-client), so the model processes start it through this entry (serving/runtime/host_services.py).
Same flags as ``python -m monitoring sidecar`` (one parser: monitoring/ingest/sidecar/cli.py).
"""

from __future__ import annotations

import os

# Before numpy loads: one BLAS thread. The sidecar's one matrix product per segment (the stored
# projection) is tiny, and OpenBLAS's pool spins after every call on the cores inference needs:
# on 2 cores, its pool cost 16.1 ms of CPU per 16-record segment, one thread 6.7 ms
# (bench/results/capture-profile-2026-12-04.md).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402

from monitoring.ingest.sidecar.cli import add_arguments, run  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitoring.ingest.sidecar", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    return int(run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
