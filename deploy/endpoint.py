"""Create and delete the SageMaker model, endpoint config and endpoint; idempotently.

Naming: model `<name>-model`, endpoint config `<name>-config`, endpoint `<name>`. Re-running
`create` reuses what already exists when it matches, and refuses (saying what differs) when
it does not, because SageMaker models and endpoint configs are immutable.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from botocore.exceptions import ClientError

from deploy.aws import error_code, error_message, is_not_found, parse_s3_url
from deploy.errors import DeployError

VARIANT = "AllTraffic"
DEFAULT_INSTANCE_TYPE = "ml.g5.xlarge"
# The serve script defaults to --log-verbose=true (a log line per request) and a 16 MiB
# Python-backend shm arena growing by 1 MiB; a few 512x512 images per request outgrow that
# at once, so start bigger and grow in larger steps.
DEFAULT_ENVIRONMENT = {
    # Selects MME mode in the container's serve script; set explicitly so a custom image
    # built FROM the SageMaker one behaves the same.
    "SAGEMAKER_MULTI_MODEL": "true",
    "SAGEMAKER_TRITON_LOG_VERBOSE": "false",
    "SAGEMAKER_TRITON_SHM_DEFAULT_BYTE_SIZE": str(64 * 1024 * 1024),
    "SAGEMAKER_TRITON_SHM_GROWTH_BYTE_SIZE": str(16 * 1024 * 1024),
}
_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
_SUFFIX = "-config"  # the longest suffix added to the name


@dataclass(frozen=True)
class EndpointNames:
    endpoint: str
    endpoint_config: str
    model: str

    @classmethod
    def for_name(cls, name: str) -> "EndpointNames":
        if not _NAME.match(name) or len(name) + len(_SUFFIX) > 63:
            raise DeployError(
                f"invalid endpoint name {name!r}: letters, digits and '-', starting with a letter "
                f"or digit, at most {63 - len(_SUFFIX)} characters"
            )
        return cls(endpoint=name, endpoint_config=f"{name}-config", model=f"{name}-model")


@dataclass
class EndpointSpec:
    name: str
    role_arn: str
    model_data_url: str
    image_uri: str
    instance_type: str = DEFAULT_INSTANCE_TYPE
    instance_count: int = 1
    environment: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ENVIRONMENT))


def validate_role_arn(role_arn: str | None) -> str:
    if not role_arn:
        raise DeployError(
            "no execution role: pass --role-arn arn:aws:iam::<account>:role/<name> "
            "(or set SAGEMAKER_ROLE_ARN); SageMaker assumes it to read the model tarballs from S3"
        )
    if not _ROLE_ARN.match(role_arn):
        raise DeployError(f"{role_arn!r} is not an IAM role ARN (arn:aws:iam::<12-digit account>:role/<name>)")
    return role_arn


def check_role_exists(iam: Any, role_arn: str, log: Callable[[str], None]) -> None:
    role_name = role_arn.rsplit("/", 1)[-1]
    try:
        iam.get_role(RoleName=role_name)
    except ClientError as exc:
        if is_not_found(exc):
            raise DeployError(f"IAM role {role_arn} does not exist; create it or pass another --role-arn") from None
        # Deployers often may not read IAM; SageMaker will validate the role itself.
        log(f"warning: could not verify role {role_arn}: {error_code(exc)}: {error_message(exc)}")


def check_model_data(s3: Any, model_data_url: str) -> list[str]:
    """The tarball keys under the ModelDataUrl prefix; errors if the bucket or tarballs are missing."""
    bucket, prefix = parse_s3_url(model_data_url)
    if not model_data_url.endswith("/"):
        raise DeployError(f"--model-data-url {model_data_url!r} must end with '/': MME treats it as a prefix")
    try:
        resp = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    except ClientError as exc:
        if error_code(exc) in ("NoSuchBucket", "404"):
            raise DeployError(f"S3 bucket {bucket!r} (from --model-data-url) does not exist") from None
        raise
    keys = [o["Key"] for o in resp.get("Contents", []) if o["Key"].endswith(".tar.gz")]
    if not keys:
        raise DeployError(f"no .tar.gz model tarballs under {model_data_url}; run `python -m deploy upload` first")
    return keys


def _describe(call: Callable[..., dict], **kwargs: Any) -> dict | None:
    try:
        return call(**kwargs)
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise


def _mismatch(kind: str, name: str, diffs: list[str]) -> DeployError:
    return DeployError(
        f"{kind} {name!r} already exists with different settings ({'; '.join(diffs)}); "
        f"run `python -m deploy delete` first or choose another --name"
    )


def ensure_model(sm: Any, names: EndpointNames, spec: EndpointSpec, log: Callable[[str], None]) -> str:
    container = {
        "Image": spec.image_uri,
        "ModelDataUrl": spec.model_data_url,
        "Mode": "MultiModel",
        "Environment": spec.environment,
    }
    existing = _describe(sm.describe_model, ModelName=names.model)
    if existing is None:
        sm.create_model(ModelName=names.model, ExecutionRoleArn=spec.role_arn, PrimaryContainer=container)
        log(f"created model {names.model}")
        return "created"
    have = existing.get("PrimaryContainer", {})
    diffs = []
    for key, wanted in container.items():
        got = have.get(key) or ({} if key == "Environment" else None)
        if got != wanted:
            diffs.append(f"{key}: {got!r} != {wanted!r}")
    if existing.get("ExecutionRoleArn") != spec.role_arn:
        diffs.append(f"ExecutionRoleArn: {existing.get('ExecutionRoleArn')!r} != {spec.role_arn!r}")
    if diffs:
        raise _mismatch("model", names.model, diffs)
    log(f"model {names.model} exists; reusing")
    return "reused"


def ensure_endpoint_config(sm: Any, names: EndpointNames, spec: EndpointSpec, log: Callable[[str], None]) -> str:
    variant = {
        "VariantName": VARIANT,
        "ModelName": names.model,
        "InstanceType": spec.instance_type,
        "InitialInstanceCount": spec.instance_count,
        "InitialVariantWeight": 1.0,
    }
    existing = _describe(sm.describe_endpoint_config, EndpointConfigName=names.endpoint_config)
    if existing is None:
        sm.create_endpoint_config(EndpointConfigName=names.endpoint_config, ProductionVariants=[variant])
        log(f"created endpoint config {names.endpoint_config} ({spec.instance_count} x {spec.instance_type})")
        return "created"
    variants = existing.get("ProductionVariants", [])
    have = variants[0] if variants else {}
    diffs = [f"{k}: {have.get(k)!r} != {variant[k]!r}" for k in ("ModelName", "InstanceType", "InitialInstanceCount")
             if have.get(k) != variant[k]]
    if len(variants) != 1:
        diffs.append(f"{len(variants)} production variants, expected 1")
    if diffs:
        raise _mismatch("endpoint config", names.endpoint_config, diffs)
    log(f"endpoint config {names.endpoint_config} exists; reusing")
    return "reused"


def ensure_endpoint(sm: Any, names: EndpointNames, log: Callable[[str], None]) -> str:
    existing = _describe(sm.describe_endpoint, EndpointName=names.endpoint)
    if existing is None:
        sm.create_endpoint(EndpointName=names.endpoint, EndpointConfigName=names.endpoint_config)
        log(f"created endpoint {names.endpoint}")
        return "created"
    if existing.get("EndpointConfigName") != names.endpoint_config:
        raise _mismatch("endpoint", names.endpoint,
                        [f"EndpointConfigName: {existing.get('EndpointConfigName')!r} != {names.endpoint_config!r}"])
    status = existing.get("EndpointStatus")
    if status == "Failed":
        raise DeployError(
            f"endpoint {names.endpoint} exists in state Failed: {existing.get('FailureReason', 'no reason given')}; "
            "run `python -m deploy delete` and create again"
        )
    log(f"endpoint {names.endpoint} exists ({status}); reusing")
    return "reused"


def poll_until(
    done: Callable[[], bool],
    *,
    timeout_s: float,
    poll_s: float,
    sleep: Callable[[float], None],
    timeout_error: Callable[[], DeployError],
    on_wait: Callable[[], None] = lambda: None,
) -> None:
    """Call ``done()`` every ``poll_s`` seconds until it is true; raise ``timeout_error()`` after
    ``timeout_s`` (counted in polls, so tests drive it with a fake ``sleep``)."""
    waited = 0.0
    while not done():
        if waited >= timeout_s:
            raise timeout_error()
        on_wait()
        sleep(poll_s)
        waited += poll_s


def wait_in_service(
    sm: Any,
    endpoint: str,
    *,
    timeout_s: float = 3600,
    poll_s: float = 30,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = print,
) -> dict:
    """Poll until InService; raise on Failed or after `timeout_s` (a GPU endpoint takes ~10 min)."""
    last: dict = {}

    def in_service() -> bool:
        last.clear()
        last.update(sm.describe_endpoint(EndpointName=endpoint))
        status = last.get("EndpointStatus")
        if status in ("Failed", "OutOfService", "Deleting"):
            raise DeployError(f"endpoint {endpoint} is {status}: {last.get('FailureReason', 'no reason given')}")
        return status == "InService"

    poll_until(in_service, timeout_s=timeout_s, poll_s=poll_s, sleep=sleep,
               on_wait=lambda: log(f"endpoint {endpoint} is {last.get('EndpointStatus')}; waiting"),
               timeout_error=lambda: DeployError(
                   f"endpoint {endpoint} still {last.get('EndpointStatus')} after {timeout_s:.0f} s; "
                   f"check the SageMaker console / CloudWatch logs"))
    return dict(last)


def create_stack(
    sm: Any,
    spec: EndpointSpec,
    *,
    wait: bool = True,
    timeout_s: float = 3600,
    poll_s: float = 30,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = print,
) -> dict[str, str]:
    """Create (or reuse) model, endpoint config and endpoint; return {resource: created|reused|InService}."""
    names = EndpointNames.for_name(spec.name)
    if spec.instance_count < 1:
        raise DeployError("--instance-count must be at least 1")
    actions = {
        "model": ensure_model(sm, names, spec, log),
        "endpoint_config": ensure_endpoint_config(sm, names, spec, log),
        "endpoint": ensure_endpoint(sm, names, log),
    }
    if wait:
        desc = wait_in_service(sm, names.endpoint, timeout_s=timeout_s, poll_s=poll_s, sleep=sleep, log=log)
        actions["status"] = desc["EndpointStatus"]
        log(f"endpoint {names.endpoint} is InService: {desc.get('EndpointArn', '')}")
    return actions


def _delete(call: Callable[..., Any], **kwargs: Any) -> str:
    try:
        call(**kwargs)
    except ClientError as exc:
        if is_not_found(exc):
            return "absent"
        raise
    return "deleted"


def wait_deleted(
    sm: Any,
    endpoint: str,
    *,
    timeout_s: float = 1800,
    poll_s: float = 15,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    poll_until(lambda: _describe(sm.describe_endpoint, EndpointName=endpoint) is None,
               timeout_s=timeout_s, poll_s=poll_s, sleep=sleep,
               timeout_error=lambda: DeployError(f"endpoint {endpoint} still exists {timeout_s:.0f} s after deletion was requested"))


def delete_stack(
    sm: Any,
    name: str,
    *,
    wait: bool = True,
    timeout_s: float = 1800,
    poll_s: float = 15,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = print,
) -> dict[str, str]:
    """Delete endpoint, endpoint config and model; missing ones count as done. {resource: deleted|absent}."""
    names = EndpointNames.for_name(name)
    # After `deploy update-endpoint` the endpoint runs another config (and models): delete those too.
    running = _describe(sm.describe_endpoint, EndpointName=names.endpoint) or {}
    extra_config = running.get("EndpointConfigName") if running.get("EndpointConfigName") != names.endpoint_config else None
    extra_models = [v["ModelName"] for v in (_describe(sm.describe_endpoint_config, EndpointConfigName=extra_config)
                                               or {}).get("ProductionVariants", [])] if extra_config else []
    actions = {"endpoint": _delete(sm.delete_endpoint, EndpointName=names.endpoint)}
    if wait and actions["endpoint"] == "deleted":
        wait_deleted(sm, names.endpoint, timeout_s=timeout_s, poll_s=poll_s, sleep=sleep)
    actions["endpoint_config"] = _delete(sm.delete_endpoint_config, EndpointConfigName=names.endpoint_config)
    actions["model"] = _delete(sm.delete_model, ModelName=names.model)
    if extra_config:
        actions[f"endpoint_config {extra_config}"] = _delete(sm.delete_endpoint_config, EndpointConfigName=extra_config)
    for model in dict.fromkeys(m for m in extra_models if m != names.model):
        actions[f"model {model}"] = _delete(sm.delete_model, ModelName=model)
    for resource, action in actions.items():
        log(f"{resource}: {action}")
    return actions
