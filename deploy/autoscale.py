"""Target-tracking autoscaling of the endpoint's instance count on invocations per instance.

A multi-model endpoint scales whole instances (each holding whichever models it has loaded),
so the signal is SageMakerVariantInvocationsPerInstance, per minute.
"""

from __future__ import annotations

from typing import Any, Callable

from botocore.exceptions import ClientError

from deploy.aws import is_not_found
from deploy.endpoint import VARIANT, EndpointNames
from deploy.errors import DeployError

NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
METRIC = "SageMakerVariantInvocationsPerInstance"
# Scale out soon, scale in slowly: a new GPU instance needs minutes to pull the image and
# load models, so giving one back early costs another cold start.
DEFAULT_SCALE_OUT_COOLDOWN = 300
DEFAULT_SCALE_IN_COOLDOWN = 900


def resource_id(name: str) -> str:
    return f"endpoint/{EndpointNames.for_name(name).endpoint}/variant/{VARIANT}"


def policy_name(name: str) -> str:
    return f"{name}-invocations-per-instance"


def configure(
    aas: Any,
    sm: Any,
    name: str,
    *,
    min_capacity: int = 1,
    max_capacity: int = 4,
    target_invocations: float = 70.0,
    scale_in_cooldown: int = DEFAULT_SCALE_IN_COOLDOWN,
    scale_out_cooldown: int = DEFAULT_SCALE_OUT_COOLDOWN,
    log: Callable[[str], None] = print,
) -> str:
    """Register the variant as a scalable target and put the target-tracking policy; return its ARN.

    Both calls are upserts, so re-running with new numbers updates the settings in place.
    """
    if min_capacity < 1:
        raise DeployError("--min must be at least 1: a real-time endpoint variant cannot scale to zero")
    if max_capacity < min_capacity:
        raise DeployError(f"--max ({max_capacity}) must be >= --min ({min_capacity})")
    if target_invocations <= 0:
        raise DeployError("--target-invocations must be positive")
    try:
        sm.describe_endpoint(EndpointName=name)
    except ClientError as exc:
        if is_not_found(exc):
            raise DeployError(f"endpoint {name!r} not found; run `python -m deploy create` first") from None
        raise
    rid = resource_id(name)
    aas.register_scalable_target(
        ServiceNamespace=NAMESPACE,
        ResourceId=rid,
        ScalableDimension=DIMENSION,
        MinCapacity=min_capacity,
        MaxCapacity=max_capacity,
    )
    resp = aas.put_scaling_policy(
        PolicyName=policy_name(name),
        ServiceNamespace=NAMESPACE,
        ResourceId=rid,
        ScalableDimension=DIMENSION,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": float(target_invocations),
            "PredefinedMetricSpecification": {"PredefinedMetricType": METRIC},
            "ScaleInCooldown": scale_in_cooldown,
            "ScaleOutCooldown": scale_out_cooldown,
        },
    )
    log(f"autoscaling {rid}: {min_capacity}..{max_capacity} instances, target {target_invocations} invocations/instance/min")
    return resp["PolicyARN"]


def remove(aas: Any, name: str, log: Callable[[str], None] = print) -> dict[str, str]:
    """Delete the policy and deregister the target; missing ones count as done."""
    rid = resource_id(name)
    actions = {}
    for key, call, kwargs in (
        ("scaling_policy", aas.delete_scaling_policy, {"PolicyName": policy_name(name)}),
        ("scalable_target", aas.deregister_scalable_target, {}),
    ):
        try:
            call(ServiceNamespace=NAMESPACE, ResourceId=rid, ScalableDimension=DIMENSION, **kwargs)
            actions[key] = "deleted"
        except ClientError as exc:
            if not is_not_found(exc):
                raise
            actions[key] = "absent"
        log(f"{key}: {actions[key]}")
    return actions
