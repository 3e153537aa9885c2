"""`python -m deploy <command>`: package, check, upload, create, autoscale, invoke, delete.

See docs/deploy.md. Errors the operator can act on print one `error: ...` line and exit 1.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from deploy import (alarms, autoscale, endpoint, guardrails, images, manifest, monitoring_env, package, retention, upload,
                    update, versions, weights)
from deploy.aws import SERVICES, AwsContext, describe_error, parse_s3_url
from deploy.compat import check_compatibility
from deploy.errors import DeployError
from deploy.invoke import invoke, save_outputs, summarize
from serving.runtime.deadline import request_parameters, triton_timeout_us
from serving.common.retry import PATIENT
from deploy.payload import PayloadError, build_request, parse_response
from deploy.safe_extract import TarballError

# `serving` runs the models; `monitoring` (its capture module needs only numpy) lets the
# models capture records inside SageMaker's container too.
DEFAULT_CODE_PACKAGES = ("serving", "monitoring")


def _size(text: str) -> int:
    """Bytes from `123`, `8MiB`, `64MB` (MB read as MiB: S3 part sizes are binary)."""
    units = {"kib": 1024, "kb": 1024, "mib": 1024**2, "mb": 1024**2, "gib": 1024**3, "gb": 1024**3}
    lowered = text.strip().lower()
    for unit, factor in units.items():
        if lowered.endswith(unit):
            return int(float(lowered[: -len(unit)]) * factor)
    return int(lowered)


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return key, value


def _aws_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("AWS")
    group.add_argument("--region", help="AWS region (default: AWS_DEFAULT_REGION / AWS_REGION / profile)")
    group.add_argument("--endpoint-url", help="send every AWS call here (moto, the local endpoint)")
    for short in SERVICES:
        group.add_argument(f"--{short}-endpoint-url", dest=f"{short}_endpoint_url",
                           help=f"endpoint for {SERVICES[short]} only (overrides --endpoint-url)")
    return parent


def _test_weights_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-test-weights", action="store_true",
                   help=f"FOR TESTS: accept tiny random weights / weights of unknown origin ({weights.ALLOW_ENV}=1 too)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m deploy", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    aws = _aws_parent()

    p = sub.add_parser("package", help="build dist/<model>.tar.gz and dist/manifest.json")
    p.add_argument("--repo", default="model_repository", help="model repository (default: %(default)s)")
    p.add_argument("--dist", default="dist", help="output directory (default: %(default)s)")
    p.add_argument("--models", nargs="*", help="only these models (default: all with a config.pbtxt)")
    env = p.add_mutually_exclusive_group()
    env.add_argument("--env-tarball", help="ship this execution env inside every model tarball "
                     f"as <model>/{package.ENV_MEMBER} and point EXECUTION_ENV_PATH at it")
    env.add_argument("--execution-env-path", help="set EXECUTION_ENV_PATH to this value instead "
                     "(e.g. an env baked into a custom serving image)")
    p.add_argument("--code-package", action="append", dest="code_packages", metavar="DIR",
                   help="Python package shipped as <model>/<name>/ in every tarball, because model.py "
                   "imports it (default: serving; repeatable)")
    p.add_argument("--no-code-package", action="store_true", help="ship no code package")
    p.add_argument("--env-version", help="env label for the manifest (default: the env tarball's name)")
    p.add_argument("--triton-version", default=images.DEFAULT_TRITON_VERSION,
                   help="Triton container version recorded in the manifest (default: %(default)s)")
    p.add_argument("--compresslevel", type=int, default=6, choices=range(1, 10), metavar="1-9")
    p.add_argument("--allow-missing-checkpoint", action="store_true",
                   help="package models without 1/checkpoint/ (tests, smoke deploys)")
    p.add_argument("--versioned", action="store_true",
                   help="name tarballs <model>-<content digest>.tar.gz (what `deploy update` uploads)")
    p.add_argument("--instances", type=int, metavar="N",
                   help="package configs that run N instances per model instead of the source's two "
                        "(1: a host that cannot hold two copies of every model, docs/gpu.md)")

    p = sub.add_parser("check", help="verify tarballs against dist/manifest.json, and env/models/image agree")
    p.add_argument("--dist", default="dist")
    p.add_argument("--env-tarball", help="also check this execution env (python_env.json) against the image")
    p.add_argument("--image-uri", help="the image `create` will use (its tag names the Triton release)")
    p.add_argument("--triton-version", help="the image's Triton release (default: from --image-uri, else the "
                   f"manifest's, else {images.DEFAULT_TRITON_VERSION})")
    p.add_argument("tarballs", nargs="*", help="tarball names or paths (default: all in the manifest)")
    _test_weights_flag(p)

    p = sub.add_parser("upload", parents=[aws], help="upload dist/*.tar.gz to s3://BUCKET/PREFIX/")
    p.add_argument("--bucket", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--dist", default="dist")
    p.add_argument("--multipart-threshold", type=_size, default=upload.DEFAULT_MULTIPART_THRESHOLD)
    p.add_argument("--multipart-chunksize", type=_size, default=upload.DEFAULT_MULTIPART_CHUNKSIZE)
    p.add_argument("--force", action="store_true", help="upload even when the object is unchanged")

    p = sub.add_parser("create", parents=[aws], help="create model, endpoint config and endpoint")
    p.add_argument("--name", required=True, help="endpoint name (model: NAME-model, config: NAME-config)")
    p.add_argument("--role-arn", default=os.environ.get("SAGEMAKER_ROLE_ARN"),
                   help="SageMaker execution role (default: $SAGEMAKER_ROLE_ARN)")
    p.add_argument("--model-data-url", required=True, help="s3://BUCKET/PREFIX/ holding the tarballs")
    p.add_argument("--instance-type", default=endpoint.DEFAULT_INSTANCE_TYPE)
    p.add_argument("--instance-count", type=int, default=1)
    p.add_argument("--image-uri", help="serving image (default: SageMaker's Triton image for the region)")
    p.add_argument("--triton-version", default=images.DEFAULT_TRITON_VERSION)
    p.add_argument("--env", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                   help="container environment, added to/overriding the defaults")
    p.add_argument("--skip-role-check", action="store_true", help="do not look the role up in IAM")
    p.add_argument("--dist", default="dist", help="manifest whose weights are checked when the model data "
                   "URL holds none (upload puts one there)")
    p.add_argument("--retain-days", type=int, default=retention.DEFAULT_RETAIN_DAYS,
                   help="expire captured records after N days: an S3 lifecycle rule on the CAPTURE_STORE "
                   "prefix's model=* partitions (default: %(default)s; 0: keep forever)")
    _test_weights_flag(p)
    p.add_argument("--no-wait", action="store_true", help="return once creation is requested")
    p.add_argument("--timeout", type=float, default=3600, help="seconds to wait for InService")
    p.add_argument("--poll-interval", type=float, default=30)
    monitoring_env.add_create_args(p)

    p = sub.add_parser("autoscale", parents=[aws], help="target-tracking autoscaling on invocations")
    p.add_argument("--name", required=True)
    p.add_argument("--min", type=int, default=1, dest="min_capacity")
    p.add_argument("--max", type=int, default=4, dest="max_capacity")
    p.add_argument("--target-invocations", type=float, default=70.0,
                   help="invocations per instance per minute (default: %(default)s)")
    p.add_argument("--scale-in-cooldown", type=int, default=autoscale.DEFAULT_SCALE_IN_COOLDOWN)
    p.add_argument("--scale-out-cooldown", type=int, default=autoscale.DEFAULT_SCALE_OUT_COOLDOWN)

    p = sub.add_parser("invoke", parents=[aws], help="send one request to one model")
    p.add_argument("--name", required=True, help="endpoint name")
    p.add_argument("--target-model", required=True, help="tarball name (sd_depth.tar.gz) or a model name "
                   "(sd_depth: its current version with --model-data-url, else sd_depth.tar.gz)")
    p.add_argument("--model-data-url", help="s3://BUCKET/PREFIX/ whose aliases.json resolves a model name")
    p.add_argument("--prompt")
    p.add_argument("--negative-prompt")
    p.add_argument("--image", help="image file for the 'image' input")
    p.add_argument("--mask-image", help="image file for the 'mask_image' input")
    p.add_argument("--gen-args", help="JSON text for the 'gen_args' input")
    p.add_argument("--input", action="append", type=_key_value, default=[], metavar="NAME=TEXT",
                   help="any other text input")
    p.add_argument("--input-file", action="append", type=_key_value, default=[], metavar="NAME=PATH",
                   help="any other input from a file (raw with --binary, base64 text in JSON)")
    p.add_argument("--binary", action="store_true", help="binary+json body instead of JSON")
    p.add_argument("--inference-id")
    p.add_argument("--segment", action="append", type=_key_value, default=[], metavar="NAME=VALUE",
                   help="segment attribute for monitoring (repeatable): request parameter segment.NAME in the body")
    p.add_argument("--deadline", type=float, default=60.0,
                   help="give up after this many seconds; refusals (503) are retried with backoff "
                        "within it and the model drops the request once it passes (default: %(default)s)")
    p.add_argument("--output-dir", help="write BYTES outputs here (images decoded)")
    p.add_argument("--dump-request", help="also write the request body to this file")

    p = sub.add_parser("update", parents=[aws], help="package versioned tarballs, check, upload them next to "
                       "the old ones, switch the aliases (and, with endpoint flags, a guarded endpoint update)")
    p.add_argument("--bucket", required=True)
    p.add_argument("--prefix", required=True, help="the endpoint's ModelDataUrl prefix")
    p.add_argument("--repo", default="model_repository")
    p.add_argument("--dist", default="dist/versioned", help="where the versioned tarballs are built")
    p.add_argument("--models", nargs="*", help="only these models (default: all)")
    p.add_argument("--env-tarball", help="ship this execution env inside every tarball (as `package`)")
    p.add_argument("--code-package", action="append", dest="code_packages", metavar="DIR")
    p.add_argument("--no-code-package", action="store_true")
    p.add_argument("--no-package", action="store_true", help="use --dist as packaged (deploy package --versioned)")
    _test_weights_flag(p)

    p = sub.add_parser("update-endpoint", parents=[aws], help="image/env/instance changes through UpdateEndpoint "
                       "with deployment guardrails (blue/green canary/linear/all-at-once, rolling, alarm rollback)")
    p.add_argument("--name", required=True)
    p.add_argument("--role-arn", default=os.environ.get("SAGEMAKER_ROLE_ARN"))
    p.add_argument("--model-data-url", required=True)
    p.add_argument("--instance-type", default=endpoint.DEFAULT_INSTANCE_TYPE)
    p.add_argument("--instance-count", type=int, default=1)
    p.add_argument("--image-uri")
    p.add_argument("--triton-version", default=images.DEFAULT_TRITON_VERSION)
    p.add_argument("--env", action="append", type=_key_value, default=[], metavar="KEY=VALUE")
    p.add_argument("--deployment", choices=guardrails.STRATEGIES, default="canary",
                   help="traffic shifting (default: %(default)s); none: no DeploymentConfig")
    p.add_argument("--canary-percent", type=int, default=10)
    p.add_argument("--linear-step-percent", type=int, default=20)
    p.add_argument("--rolling-batch-percent", type=int, default=25)
    p.add_argument("--wait-s", type=int, default=600, help="bake time between steps, seconds")
    p.add_argument("--rollback-alarm", action="append", default=[], metavar="ALARM",
                   help="CloudWatch alarm that rolls the update back (repeatable): the monitoring loop's alarms")
    p.add_argument("--ab-image-uri", help="A/B: a second production variant running this image")
    p.add_argument("--ab-weight", type=float, default=0.1, help="share of traffic for the A/B variant")
    p.add_argument("--dist", default="dist")
    _test_weights_flag(p)

    p = sub.add_parser("versions", parents=[aws], help="list model versions under an MME prefix (current marked)")
    p.add_argument("--bucket", required=True)
    p.add_argument("--prefix", required=True)

    p = sub.add_parser("prune", parents=[aws], help="delete old model versions (never the current one)")
    p.add_argument("--bucket", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--keep", type=int, default=0, help="also keep this many newest non-current versions")
    p.add_argument("--models", nargs="*", help="only these models")
    p.add_argument("--dry-run", action="store_true")

    p = sub.add_parser("delete", parents=[aws], help="delete everything create/autoscale made")
    p.add_argument("--name", required=True)
    p.add_argument("--no-wait", action="store_true")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--poll-interval", type=float, default=15)
    return parser


def _context(args: argparse.Namespace) -> AwsContext:
    overrides = {s: getattr(args, f"{s}_endpoint_url") for s in SERVICES if getattr(args, f"{s}_endpoint_url")}
    return AwsContext(region=args.region, endpoint_url=args.endpoint_url, service_endpoints=overrides)


def _code_packages(args: argparse.Namespace) -> list[str]:
    if args.no_code_package:
        return []
    if args.code_packages:
        return args.code_packages
    # The project's model.py files are one-liners importing `serving`; without it the stock
    # Triton image cannot load them. Resolved from the repo root (where `make` runs).
    for package in DEFAULT_CODE_PACKAGES:
        if not Path(package).is_dir():
            raise DeployError(f"code package {package}/ not found in {Path.cwd()}; "
                              "run from the repository root, pass --code-package DIR or --no-code-package")
    return list(DEFAULT_CODE_PACKAGES)


def _cmd_package(args: argparse.Namespace) -> int:
    result = package.package_repository(
        args.repo,
        args.dist,
        models=args.models,
        env_tarball=args.env_tarball,
        env_version=args.env_version,
        execution_env_path=args.execution_env_path,
        code_packages=_code_packages(args),
        triton_version=args.triton_version,
        compresslevel=args.compresslevel,
        require_checkpoint=not args.allow_missing_checkpoint,
        versioned=args.versioned,
        instances=args.instances,
    )
    for model, entry in sorted(result["models"].items()):
        print(f"{Path(args.dist) / entry['tarball']}  {entry['size']} bytes  sha256 {entry['sha256']}")
    print(f"{Path(args.dist) / package.MANIFEST_NAME}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    has_manifest = (Path(args.dist) / package.MANIFEST_NAME).is_file()
    results = manifest.check_dist(args.dist, args.tarballs or None) if has_manifest or not args.env_tarball else {}
    loaded = manifest.load_manifest(args.dist) if has_manifest else None
    paths = [Path(args.dist) / name for name in results]
    compat = check_compatibility(loaded, image_uri=args.image_uri, triton_version=args.triton_version,
                                 env_tarball=args.env_tarball, tarballs=paths)
    results[f"image {compat.image} (Python {compat.release.python}, glibc {compat.release.glibc})"] = compat.problems
    if loaded is not None:
        allow = weights.allow_test_weights(args.allow_test_weights)
        names = set(results)
        selected = [m for m, e in loaded["models"].items() if e.get("tarball") in names]
        for model, (origin, problems) in weights.check_manifest_weights(loaded, allow_test=allow, models=selected).items():
            results[f"weights {model}: {origin}"] = problems
    failed = 0
    for name, problems in sorted(results.items()):
        if problems:
            failed += 1
            print(f"FAIL {name}", file=sys.stderr)
            for problem in problems:
                print(f"  - {problem}", file=sys.stderr)
        else:
            print(f"OK   {name}")
    return 1 if failed else 0


def _cmd_upload(args: argparse.Namespace) -> int:
    s3 = _context(args).client("s3")
    upload.upload_dist(
        s3, args.bucket, args.prefix, args.dist,
        multipart_threshold=args.multipart_threshold,
        multipart_chunksize=args.multipart_chunksize,
        force=args.force,
    )
    prefix = args.prefix.strip("/")
    print(f"model data url: s3://{args.bucket}/{prefix + '/' if prefix else ''}")
    return 0


def _require_real_weights(ctx: AwsContext, args: argparse.Namespace) -> None:
    """Refuse test weights: the manifest `upload` put at the model data URL, else --dist's."""
    bucket, prefix = parse_s3_url(args.model_data_url)
    loaded = upload.read_remote_manifest(ctx.client("s3"), bucket, prefix) or manifest.load_manifest(args.dist)
    weights.require_deployable(loaded, allow_test=weights.allow_test_weights(args.allow_test_weights))


def _cmd_create(args: argparse.Namespace) -> int:
    ctx = _context(args)
    region = ctx.resolved_region()
    role_arn = endpoint.validate_role_arn(args.role_arn)
    image_uri = args.image_uri or images.triton_image_uri(region, args.triton_version)
    environment = dict(endpoint.DEFAULT_ENVIRONMENT)
    environment.update(monitoring_env.environment(args))  # capture + watch loop, on by default
    environment.update(dict(args.env))
    spec = endpoint.EndpointSpec(
        name=args.name, role_arn=role_arn, model_data_url=args.model_data_url, image_uri=image_uri,
        instance_type=args.instance_type, instance_count=args.instance_count, environment=environment,
    )
    endpoint.EndpointNames.for_name(args.name)  # fail on a bad name before any AWS call
    endpoint.check_model_data(ctx.client("s3"), args.model_data_url)
    _require_real_weights(ctx, args)
    if not args.skip_role_check:
        endpoint.check_role_exists(ctx.client("iam"), role_arn, log=print)
    print(f"image: {image_uri}")
    store = environment.get("CAPTURE_STORE", "")
    if args.retain_days and store.startswith("s3://"):
        rule = retention.put_capture_retention(ctx.client("s3"), store, args.retain_days)
        print(f"retention: {rule['Filter']['Prefix']}* expires after {args.retain_days} days (lifecycle rule {rule['ID']})")
    endpoint.create_stack(
        ctx.client("sagemaker"), spec, wait=not args.no_wait, timeout_s=args.timeout, poll_s=args.poll_interval,
    )
    if monitoring_env.wants_alarms(args, environment):
        alarms.create(ctx.client("cloudwatch"), args.name, environment[monitoring_env.NAMESPACE_VAR],
                      monitoring_env.every_seconds(environment), region, args.alarm_topic_arn)
    return 0


def _cmd_autoscale(args: argparse.Namespace) -> int:
    ctx = _context(args)
    arn = autoscale.configure(
        ctx.client("autoscaling"), ctx.client("sagemaker"), args.name,
        min_capacity=args.min_capacity, max_capacity=args.max_capacity,
        target_invocations=args.target_invocations,
        scale_in_cooldown=args.scale_in_cooldown, scale_out_cooldown=args.scale_out_cooldown,
    )
    print(f"policy: {arn}")
    return 0


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise DeployError(f"cannot read {path}: {exc.strerror}") from None


def _invoke_inputs(args: argparse.Namespace) -> dict[str, list[bytes | str]]:
    inputs: dict[str, list[bytes | str]] = {}
    for name, value in (("prompt", args.prompt), ("negative_prompt", args.negative_prompt),
                        ("gen_args", args.gen_args), *args.input):
        if value is not None:
            inputs[name] = [value]
    for name, path in (("image", args.image), ("mask_image", args.mask_image), *args.input_file):
        if path is not None:
            data = _read(path)
            # JSON bodies carry text only; the serving side accepts raw bytes or base64 text.
            inputs[name] = [data if args.binary else base64.b64encode(data).decode("ascii")]
    if not inputs:
        raise DeployError("no inputs: give --prompt, --image, --input NAME=TEXT, ...")
    return inputs


def _cmd_invoke(args: argparse.Namespace) -> int:
    if args.model_data_url:
        target = versions.resolve_url(_context(args).client("s3"), args.model_data_url, args.target_model)
    else:
        target = args.target_model if args.target_model.endswith(".tar.gz") else f"{args.target_model}.tar.gz"
    if not args.deadline > 0:
        raise DeployError(f"--deadline {args.deadline}: must be > 0 seconds")
    params = {**request_parameters(args.deadline), "timeout": triton_timeout_us(args.deadline)}
    body, content_type = build_request(_invoke_inputs(args), binary=args.binary, parameters=params,
                                       segments=dict(args.segment))
    if args.dump_request:
        Path(args.dump_request).write_bytes(body)
    # Refusals are retried by `invoke` with jitter, not by botocore at once: one attempt per call.
    runtime = _context(args).client("runtime", retries={"max_attempts": 1, "mode": "standard"})
    resp_body, resp_type = invoke(runtime, args.name, target, body, content_type, inference_id=args.inference_id,
                                  deadline_s=args.deadline, policy=PATIENT)
    outputs = parse_response(resp_body, resp_type)
    print(json.dumps({"target_model": target, "content_type": resp_type, "outputs": summarize(outputs)}, indent=2))
    if args.output_dir:
        for path in save_outputs(outputs, args.output_dir):
            print(f"wrote {path}")
    return 0


def _cmd_update(args: argparse.Namespace) -> int:
    if not args.no_package:
        package.package_repository(args.repo, args.dist, models=args.models, env_tarball=args.env_tarball,
                                   code_packages=_code_packages(args), versioned=True)
    update.update_models(_context(args).client("s3"), args.bucket, args.prefix, args.dist,
                         allow_test_weights=weights.allow_test_weights(args.allow_test_weights))
    return 0


def _cmd_update_endpoint(args: argparse.Namespace) -> int:
    ctx = _context(args)
    role_arn = endpoint.validate_role_arn(args.role_arn)
    environment = dict(endpoint.DEFAULT_ENVIRONMENT)
    environment.update(dict(args.env))
    spec = endpoint.EndpointSpec(
        name=args.name, role_arn=role_arn, model_data_url=args.model_data_url,
        image_uri=args.image_uri or images.triton_image_uri(ctx.resolved_region(), args.triton_version),
        instance_type=args.instance_type, instance_count=args.instance_count, environment=environment)
    rollout = guardrails.Rollout(strategy=args.deployment, canary_percent=args.canary_percent,
                                 linear_step_percent=args.linear_step_percent,
                                 rolling_batch_percent=args.rolling_batch_percent, wait_s=args.wait_s,
                                 alarms=args.rollback_alarm)
    guardrails.deployment_config(rollout, variants=2 if args.ab_image_uri else 1)  # bad flags fail before AWS calls
    _require_real_weights(ctx, args)
    guardrails.update_endpoint(ctx.client("sagemaker"), spec, rollout, ab_image_uri=args.ab_image_uri,
                               ab_weight=args.ab_weight)
    return 0


def _cmd_versions(args: argparse.Namespace) -> int:
    for v in versions.list_versions(_context(args).client("s3"), args.bucket, args.prefix):
        print(f"{'*' if v.current else ' '} {v.model:20} {v.version or '(unversioned)':14} {v.tarball}  "
              f"{v.size} bytes  {v.last_modified:%Y-%m-%d %H:%M:%S}")
    return 0


def _cmd_prune(args: argparse.Namespace) -> int:
    deleted = versions.prune(_context(args).client("s3"), args.bucket, args.prefix, keep=args.keep,
                             models=args.models, dry_run=args.dry_run)
    print(f"{'would delete' if args.dry_run else 'deleted'} {len(deleted)} old version(s)")
    return 0


def _cmd_delete(args: argparse.Namespace) -> int:
    ctx = _context(args)
    endpoint.EndpointNames.for_name(args.name)
    # Deregister scaling first: a scalable target left behind keeps trying to act on the endpoint.
    autoscale.remove(ctx.client("autoscaling"), args.name)
    alarms.delete(ctx.client("cloudwatch"), args.name)
    endpoint.delete_stack(ctx.client("sagemaker"), args.name, wait=not args.no_wait,
                          timeout_s=args.timeout, poll_s=args.poll_interval)
    return 0


COMMANDS = {
    "package": _cmd_package,
    "check": _cmd_check,
    "upload": _cmd_upload,
    "create": _cmd_create,
    "update": _cmd_update,
    "update-endpoint": _cmd_update_endpoint,
    "versions": _cmd_versions,
    "prune": _cmd_prune,
    "autoscale": _cmd_autoscale,
    "invoke": _cmd_invoke,
    "delete": _cmd_delete,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (DeployError, TarballError, PayloadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    except (ClientError, NoCredentialsError) as exc:
        print(f"error: {describe_error(exc)}", file=sys.stderr)
    except BotoCoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
