"""``python -m monitoring.ingest.sidecar``: the sidecar alone, without importing every other command.

``python -m monitoring sidecar`` builds the full command registry (scoring, reports: pandas,
scikit-learn); the model execution env ships only what the sidecar needs (pyarrow, boto3,
prometheus-client), so the model processes start it through this entry (serving/runtime/host_services.py).
Same flags as ``python -m monitoring sidecar`` (one parser: monitoring/ingest/sidecar/cli.py).
"""

from __future__ import annotations

import argparse
import logging
import sys

from monitoring.ingest.sidecar.cli import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitoring.ingest.sidecar", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    return int(run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
