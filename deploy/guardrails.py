"""Guarded endpoint updates: a new model + endpoint config, then `UpdateEndpoint` with a
DeploymentConfig (SageMaker's deployment guardrails). docs/deploy.md#guarded-updates.

Models and endpoint configs are immutable, so an image, environment, instance type or count
change is a new pair named after a digest of its settings (`<name>-model-<h>`,
`<name>-config-<h>`); the old pair stays for SageMaker's rollback. What AWS documents
(checked 2026-12-03, deployment-guardrails-exclusions): blue/green and rolling need the same
variant name in the new config; rolling excludes multi-variant endpoints; the feature
exclusions list Marketplace containers and Inf1 only. Older versions of that page also
excluded multi-model endpoints; no page says MMEs are supported now. We send the guardrail
config and let SageMaker validate it; `--deployment none` sends none (SageMaker's default
blue/green, all at once).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable

from deploy.endpoint import VARIANT, EndpointNames, EndpointSpec, _describe
from deploy.errors import DeployError

CANDIDATE_VARIANT = "Candidate"
STRATEGIES = ("all-at-once", "canary", "linear", "rolling", "none")
MAX_WAIT_S = 3600  # WaitIntervalInSeconds: 0-3600 in the API


@dataclass
class Rollout:
    strategy: str = "canary"
    canary_percent: int = 10
    linear_step_percent: int = 20
    rolling_batch_percent: int = 25
    wait_s: int = 600  # bake time between steps
    termination_wait_s: int = 300  # keep the blue fleet this long after the shift
    alarms: list[str] = field(default_factory=list)


def _percent(name: str, value: int, low: int, high: int) -> dict:
    if not low <= value <= high:
        raise DeployError(f"{name} must be {low}-{high} (% of capacity), got {value}")
    return {"Type": "CAPACITY_PERCENT", "Value": value}


def deployment_config(rollout: Rollout, *, variants: int) -> dict | None:
    """The UpdateEndpoint DeploymentConfig for a rollout, validated the way AWS documents it."""
    if rollout.strategy not in STRATEGIES:
        raise DeployError(f"--deployment must be one of {', '.join(STRATEGIES)}, got {rollout.strategy!r}")
    if rollout.strategy == "none":
        if rollout.alarms:
            raise DeployError("--rollback-alarm needs a guarded --deployment (not none)")
        return None
    if not 0 <= rollout.wait_s <= MAX_WAIT_S:
        raise DeployError(f"--wait-s must be 0-{MAX_WAIT_S} seconds, got {rollout.wait_s}")
    config: dict[str, Any] = {}
    if rollout.strategy == "rolling":
        if variants > 1:
            raise DeployError("rolling deployments exclude multi-variant endpoints (AWS); use canary/linear/all-at-once "
                              "with --ab-image-uri")
        config["RollingUpdatePolicy"] = {
            # AWS: a batch is 5-50 % of the variant's instances.
            "MaximumBatchSize": _percent("--rolling-batch-percent", rollout.rolling_batch_percent, 5, 50),
            "WaitIntervalInSeconds": rollout.wait_s,
        }
    else:
        routing: dict[str, Any] = {"Type": rollout.strategy.upper().replace("-", "_"),
                                   "WaitIntervalInSeconds": rollout.wait_s}
        if rollout.strategy == "canary":
            routing["CanarySize"] = _percent("--canary-percent", rollout.canary_percent, 1, 50)
        elif rollout.strategy == "linear":
            routing["LinearStepSize"] = _percent("--linear-step-percent", rollout.linear_step_percent, 10, 50)
        config["BlueGreenUpdatePolicy"] = {"TrafficRoutingConfiguration": routing,
                                           "TerminationWaitInSeconds": rollout.termination_wait_s}
    if rollout.alarms:
        config["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in rollout.alarms]}
    return config


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:8]


def _name(base: str, kind: str, digest: str) -> str:
    return f"{base[: 63 - len(kind) - len(digest) - 2]}-{kind}-{digest}"


def _ensure_model(sm: Any, name: str, spec: EndpointSpec, image: str, log: Callable[[str], None]) -> None:
    if _describe(sm.describe_model, ModelName=name) is not None:
        log(f"model {name} exists (same settings: its name is their digest); reusing")
        return
    sm.create_model(ModelName=name, ExecutionRoleArn=spec.role_arn, PrimaryContainer={
        "Image": image, "ModelDataUrl": spec.model_data_url, "Mode": "MultiModel", "Environment": spec.environment})
    log(f"created model {name}")


def _running(sm: Any, config_name: str | None, spec: EndpointSpec) -> list[tuple] | None:
    """(image, instance type, count) per variant of the running config, when its models match
    `spec` in everything else (data URL, environment, role); None when anything else differs."""
    config = _describe(sm.describe_endpoint_config, EndpointConfigName=config_name) if config_name else None
    out = []
    for variant in (config or {}).get("ProductionVariants", []):
        model = _describe(sm.describe_model, ModelName=variant["ModelName"]) or {}
        container = model.get("PrimaryContainer", {})
        if (container.get("ModelDataUrl"), container.get("Environment") or {}, model.get("ExecutionRoleArn")) != \
                (spec.model_data_url, spec.environment, spec.role_arn):
            return None
        out.append((container.get("Image"), variant.get("InstanceType"), variant.get("InitialInstanceCount")))
    return out or None


def plan_variants(spec: EndpointSpec, model: str, *, ab_model: str | None = None, ab_weight: float = 0.0) -> list[dict]:
    """Production variants: the primary keeps its name (guardrails need it); an A/B adds a weighted candidate."""
    primary = {"VariantName": VARIANT, "ModelName": model, "InstanceType": spec.instance_type,
               "InitialInstanceCount": spec.instance_count, "InitialVariantWeight": 1.0}
    if ab_model is None:
        return [primary]
    if not 0.0 < ab_weight < 1.0:
        raise DeployError(f"--ab-weight must be between 0 and 1 (share of traffic for the candidate), got {ab_weight}")
    primary["InitialVariantWeight"] = round(1.0 - ab_weight, 6)
    return [primary, {"VariantName": CANDIDATE_VARIANT, "ModelName": ab_model, "InstanceType": spec.instance_type,
                      "InitialInstanceCount": spec.instance_count, "InitialVariantWeight": ab_weight}]


def update_endpoint(sm: Any, spec: EndpointSpec, rollout: Rollout, *, ab_image_uri: str | None = None,
                    ab_weight: float = 0.0, log: Callable[[str], None] = print) -> dict:
    """Create the new model(s) and endpoint config, then request the guarded update.

    Returns the UpdateEndpoint request sent. The endpoint must exist (`deploy create` first).
    """
    names = EndpointNames.for_name(spec.name)
    if spec.instance_count < 1:
        raise DeployError("--instance-count must be at least 1")
    current = _describe(sm.describe_endpoint, EndpointName=names.endpoint)
    if current is None:
        raise DeployError(f"endpoint {names.endpoint} does not exist; run `python -m deploy create` first")
    if current.get("EndpointStatus") not in ("InService", "Failed"):
        raise DeployError(f"endpoint {names.endpoint} is {current.get('EndpointStatus')}; wait until it is InService")
    wanted = [(image, spec.instance_type, spec.instance_count) for image in
              ([spec.image_uri] + ([ab_image_uri] if ab_image_uri else []))]
    if _running(sm, current.get("EndpointConfigName"), spec) == wanted:
        raise DeployError(f"endpoint {names.endpoint} already runs image, environment and instances as asked: "
                          "nothing to update")
    settings = (spec.image_uri, spec.model_data_url, spec.environment, spec.role_arn)
    model = _name(spec.name, "model", _digest(*settings))
    _ensure_model(sm, model, spec, spec.image_uri, log)
    ab_model = None
    if ab_image_uri:
        ab_model = _name(spec.name, "model", _digest(ab_image_uri, *settings[1:]))
        _ensure_model(sm, ab_model, spec, ab_image_uri, log)
    variants = plan_variants(spec, model, ab_model=ab_model, ab_weight=ab_weight)
    config_name = _name(spec.name, "config", _digest(variants))
    if config_name == current.get("EndpointConfigName"):
        raise DeployError(f"endpoint {names.endpoint} already runs {config_name}: nothing to update")
    if _describe(sm.describe_endpoint_config, EndpointConfigName=config_name) is None:
        sm.create_endpoint_config(EndpointConfigName=config_name, ProductionVariants=variants)
        log(f"created endpoint config {config_name} ({', '.join(v['VariantName'] for v in variants)})")
    request: dict[str, Any] = {"EndpointName": names.endpoint, "EndpointConfigName": config_name}
    guard = deployment_config(rollout, variants=len(variants))
    if guard is not None:
        request["DeploymentConfig"] = guard
    sm.update_endpoint(**request)
    log(f"update requested: {current.get('EndpointConfigName')} -> {config_name} ({rollout.strategy}"
        + (f", rollback on {', '.join(rollout.alarms)}" if rollout.alarms else "") + ")")
    return request
