"""A local, SageMaker-compatible multi-model endpoint (MME) in front of a real tritonserver.

`python -m deploy.mme` serves, on one port, both faces of a SageMaker MME:

* the sagemaker-runtime data plane (`POST /endpoints/<name>/invocations` with the
  `X-Amzn-SageMaker-Target-Model` header), so `boto3.client("sagemaker-runtime",
  endpoint_url=...).invoke_endpoint(TargetModel=...)` works unchanged;
* the MME container contract that SageMaker's Triton front end implements (`/ping`,
  `/models`, `/models/<n>`, `/models/<n>/invoke`).

On the first invocation of a TargetModel the tarball is fetched from the model data URL (a
local directory or an `s3://` prefix), extracted with `deploy.safe_extract`, placed in the
endpoint's own Triton model repository and loaded through Triton's repository API; the least
recently used models are unloaded when a memory budget is exceeded. See docs/mme.md.

Modules: `config` (settings from CLI/env), `errors` (status codes and SageMaker error shapes),
`source` (local/S3 model data), `triton` (talking to tritonserver), `cache` (load/LRU),
`server` (HTTP routing and the `MMEEndpoint` that owns everything), `coldstart`.
"""

from deploy.mme.config import MMEConfig
from deploy.mme.server import MMEEndpoint

__all__ = ["MMEConfig", "MMEEndpoint"]
