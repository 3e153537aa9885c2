"""What `deploy create` adds to the container environment so monitoring runs by itself.

By default: capture on, into a store under the endpoint's own S3 prefix
(``s3://<model data bucket>/monitoring/<endpoint>/store``), the sidecar's watch loop scoring
``--watch-every`` windows and publishing to CloudWatch namespace ``ModelMonitoring/<endpoint>``,
which the alarms of deploy/alarms.py watch. ``--no-capture`` turns all of it off; ``--env KEY=VALUE``
still overrides any single variable.
"""

from __future__ import annotations

import argparse
from typing import Mapping

from deploy.alarms import default_namespace
from deploy.aws import parse_s3_url
from deploy.errors import DeployError

STORE_VAR = "CAPTURE_STORE"
NAMESPACE_VAR = "MONITORING_CLOUDWATCH_NAMESPACE"
EVERY_VAR = "MONITORING_WATCH_EVERY"
DEFAULT_EVERY = "1h"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def add_create_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("monitoring (docs/watch.md)")
    g.add_argument("--no-capture", action="store_true", help="no capture, no watch loop, no alarms")
    g.add_argument("--capture-store", help="capture store (default: s3://<model data bucket>/monitoring/<name>/store)")
    g.add_argument("--watch-every", default=DEFAULT_EVERY, help="window the sidecar scores, and the alarms' period (default: %(default)s)")
    g.add_argument("--cloudwatch-namespace", help="metrics namespace (default: ModelMonitoring/<name>)")
    g.add_argument("--alarm-topic-arn", help="SNS topic the alarms notify (default: none, state only)")
    g.add_argument("--no-alarms", action="store_true", help="publish metrics but create no alarms or dashboard")


def every_seconds(environment: Mapping[str, str]) -> int:
    text = environment.get(EVERY_VAR, DEFAULT_EVERY).strip().lower()
    if len(text) < 2 or text[-1] not in _UNITS or not text[:-1].isdigit() or int(text[:-1]) <= 0:
        raise DeployError(f"{EVERY_VAR}={text!r}: expected a positive count and a unit s/m/h/d, e.g. 1h")
    return int(text[:-1]) * _UNITS[text[-1]]


def environment(args: argparse.Namespace) -> dict[str, str]:
    if args.no_capture:
        return {}
    bucket, _ = parse_s3_url(args.model_data_url)
    env = {STORE_VAR: args.capture_store or f"s3://{bucket}/monitoring/{args.name}/store",
           EVERY_VAR: args.watch_every,
           NAMESPACE_VAR: args.cloudwatch_namespace or default_namespace(args.name)}
    every_seconds(env)  # fail before any AWS call
    return env


def wants_alarms(args: argparse.Namespace, environment: Mapping[str, str]) -> bool:
    return not args.no_capture and not args.no_alarms and bool(environment.get(NAMESPACE_VAR))
