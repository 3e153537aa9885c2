"""boto3 clients with per-service endpoint overrides, region resolution and error helpers.

Endpoint precedence for each service (so tests and the local endpoint need no code path of
their own): `--<service>-endpoint-url` flag > `--endpoint-url` flag > botocore's own
environment variables (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_SAGEMAKER,
AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING, AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME,
AWS_ENDPOINT_URL_IAM, AWS_ENDPOINT_URL_CLOUDWATCH, AWS_ENDPOINT_URL) > the real AWS endpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.config
from botocore import UNSIGNED
from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError

from deploy.errors import DeployError

# Short names used by the CLI flags -> boto3 service names.
SERVICES = {
    "s3": "s3",
    "sagemaker": "sagemaker",
    "autoscaling": "application-autoscaling",
    "runtime": "sagemaker-runtime",
    "iam": "iam",
    "cloudwatch": "cloudwatch",
}


@dataclass
class AwsContext:
    """What every command needs to make clients: region and endpoint overrides."""

    region: str | None = None
    endpoint_url: str | None = None
    service_endpoints: dict[str, str] = field(default_factory=dict)  # short name -> URL
    _session: Any = None

    @property
    def session(self) -> boto3.session.Session:
        if self._session is None:
            self._session = boto3.session.Session(region_name=self.region)
        return self._session

    def resolved_region(self) -> str:
        region = self.region or self.session.region_name
        if not region:
            raise DeployError("no AWS region: pass --region or set AWS_DEFAULT_REGION / AWS_REGION")
        return region

    def endpoint_for(self, short: str) -> str | None:
        return self.service_endpoints.get(short) or self.endpoint_url

    def client(self, short: str, **config: Any) -> Any:
        endpoint = self.endpoint_for(short)
        if short == "runtime":
            # An inference call is expensive and not always safe to repeat: one retry (for
            # throttling), and a read timeout above SageMaker's 60 s invocation limit so its
            # own timeout error arrives instead of a client-side one.
            config = {"retries": {"max_attempts": 2, "mode": "standard"}, "read_timeout": 70, **config}
        else:
            config = {"retries": {"max_attempts": 5, "mode": "standard"}, **config}
        cfg = botocore.config.Config(**config)
        # A local endpoint does not check signatures; sign nothing rather than fail for want
        # of credentials on a developer machine.
        if endpoint is not None and self.session.get_credentials() is None:
            cfg = cfg.merge(botocore.config.Config(signature_version=UNSIGNED))
        kwargs: dict[str, Any] = {"region_name": self.resolved_region(), "config": cfg}
        if endpoint is not None:
            kwargs["endpoint_url"] = endpoint
        try:
            return self.session.client(SERVICES[short], **kwargs)
        except NoRegionError:
            raise DeployError("no AWS region: pass --region or set AWS_DEFAULT_REGION / AWS_REGION") from None


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def error_message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", exc))


def is_not_found(exc: ClientError) -> bool:
    """Whether a call failed because the resource does not exist.

    SageMaker reports that as ValidationException "Could not find ..."; application-autoscaling
    as ObjectNotFoundException (moto: ValidationException "No scaling policy found ...").
    """
    code = error_code(exc)
    if code in ("ResourceNotFound", "ResourceNotFoundException", "ObjectNotFoundException",
                "NoSuchEntity", "NoSuchBucket", "NoSuchKey", "404", "NotFound"):
        return True
    message = error_message(exc).lower()
    return code == "ValidationException" and any(
        phrase in message for phrase in ("could not find", "no scaling policy found", "no scalable target found")
    )


def describe_error(exc: Exception) -> str:
    """One line for the operator: service code and message, or the credentials problem."""
    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials found (set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
    if isinstance(exc, ClientError):
        op = getattr(exc, "operation_name", "call")
        return f"{op} failed: {error_code(exc)}: {error_message(exc)}"
    return str(exc)


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix/` -> ("bucket", "some/prefix/") with a trailing slash on the prefix."""
    if not url.startswith("s3://"):
        raise DeployError(f"{url!r} is not an s3:// URL")
    bucket, _, prefix = url[len("s3://"):].partition("/")
    if not bucket:
        raise DeployError(f"{url!r} has no bucket name")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


def read_json_table(s3: Any, bucket: str, key: str, table: str = "models") -> dict | None:
    """A JSON object in S3 whose ``table`` entry is a dict (a manifest, the alias object); None
    when there is no such key. Bad JSON or a missing table is a DeployError naming the object."""
    from botocore.exceptions import ClientError

    from deploy.errors import DeployError

    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    try:
        doc = json.loads(body)
    except json.JSONDecodeError as exc:
        raise DeployError(f"s3://{bucket}/{key} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get(table), dict):
        raise DeployError(f"s3://{bucket}/{key} has no {table!r} table; upload again")
    return doc
