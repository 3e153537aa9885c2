"""Load-test the served models: `python -m bench.loadtest MODEL ...` (see `bench.loadtest.cli`).

Closed-loop concurrency sweeps and open-loop request-rate sweeps (constant or Poisson
arrivals, latency measured from the scheduled time) over Triton HTTP, Triton gRPC or SageMaker
InvokeEndpoint, with realistic payloads (`payloads`), error kinds (`transports`), Triton's
server-side timings (`stats`) and JSON/CSV/PNG reports (`report`). docs/loadtest.md explains
the output.
"""

from bench.loadtest.payloads import Payload, PayloadFactory
from bench.loadtest.runner import Recorder, arrival_offsets, run_concurrency_step, run_rate_step
from bench.loadtest.transports import RequestFailed, SageMakerTransport, TritonTransport, classify_error

__all__ = ["Payload", "PayloadFactory", "Recorder", "RequestFailed", "SageMakerTransport", "TritonTransport",
           "arrival_offsets", "classify_error", "run_concurrency_step", "run_rate_step"]
