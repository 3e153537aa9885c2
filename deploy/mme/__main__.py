"""`python -m deploy.mme`: run the local SageMaker-compatible multi-model endpoint.

    python -m deploy.mme --model-data-url dist/ --port 8080 --memory-budget-mb 6000
    python -m deploy.mme --model-data-url s3://my-bucket/models/ --s3-endpoint-url http://127.0.0.1:5000

then, unchanged from real SageMaker:

    boto3.client("sagemaker-runtime", endpoint_url="http://127.0.0.1:8080", region_name="us-east-1",
                 aws_access_key_id="x", aws_secret_access_key="x").invoke_endpoint(
        EndpointName="local", TargetModel="sd_depth.tar.gz", ContentType="application/json", Body=...)
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from deploy.mme.config import add_arguments, from_args
from deploy.mme.server import MMEEndpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.mme", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = from_args(args)
    endpoint = MMEEndpoint(config)
    print(f"starting tritonserver (explicit model control) in {config.work_dir} ...", flush=True)
    try:
        endpoint.start()
    except (RuntimeError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    budget = f"{config.memory_budget_mb} MiB ({config.footprint})" if config.memory_budget_mb else "none"
    print(f"local MME listening on {endpoint.url}\n"
          f"  model data     {config.model_data_url or '(none: POST /models only)'}\n"
          f"  tritonserver   {endpoint.triton.url}  log: {config.work_dir}/log/tritonserver.log\n"
          f"  memory budget  {budget}\n"
          f"  try            python -m deploy.mme.coldstart --endpoint-url {endpoint.url} --help", flush=True)
    done.wait()
    print("stopping ...", flush=True)
    code = endpoint.stop()
    return 0 if code in (0, None) else 1


if __name__ == "__main__":
    sys.exit(main())
