"""Capture retention on S3: one lifecycle rule that expires the store's capture partitions.

The rule's filter is `<store prefix>/model=`: the capture store keeps records only under
`model=<m>/date=.../hour=...` (monitoring/ingest/store/writer.py), so baselines, actuals and score
runs stored beside it never match. Other lifecycle rules on the bucket are kept; ours is
replaced by ID, so re-running `create` with another `--retain-days` updates it.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from deploy.aws import error_code, parse_s3_url
from deploy.errors import DeployError

DEFAULT_RETAIN_DAYS = 30
MAX_RETAIN_DAYS = 3650


def rule_id(prefix: str) -> str:
    return f"capture-retention:{prefix.strip('/') or '(root)'}"[:255]


def capture_rule(store_url: str, days: int) -> tuple[str, dict]:
    """(bucket, the lifecycle rule) for a capture store at `store_url` (s3://bucket/prefix/)."""
    if not isinstance(days, int) or not 1 <= days <= MAX_RETAIN_DAYS:
        raise DeployError(f"--retain-days must be a whole number of days from 1 to {MAX_RETAIN_DAYS}, got {days!r}")
    bucket, prefix = parse_s3_url(store_url)
    return bucket, {
        "ID": rule_id(prefix),
        "Filter": {"Prefix": f"{prefix}model="},
        "Status": "Enabled",
        "Expiration": {"Days": days},
    }


def put_capture_retention(s3: Any, store_url: str, days: int) -> dict:
    """Add (or replace) the capture retention rule on the store's bucket; return the rule."""
    bucket, rule = capture_rule(store_url, days)
    try:
        rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", [])
    except ClientError as exc:
        if error_code(exc) != "NoSuchLifecycleConfiguration":
            raise
        rules = []
    rules = [r for r in rules if r.get("ID") != rule["ID"]] + [rule]
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
    return rule
