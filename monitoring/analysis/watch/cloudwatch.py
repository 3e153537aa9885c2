"""Publishing data points to CloudWatch: ``PutMetricData`` (default) or Embedded Metric Format.

* ``api``: ``cloudwatch.put_metric_data`` through boto3. Needs ``cloudwatch:PutMetricData`` on
  the role and outbound network; works the same from the endpoint's sidecar, cron, a Kubernetes
  CronJob or a Processing job, and the endpoint is boto3's standard setting
  (``AWS_ENDPOINT_URL_CLOUDWATCH`` / ``AWS_ENDPOINT_URL``), so tests reach a moto server.
* ``emf``: one bare JSON line per data point group on stdout, which SageMaker ships to CloudWatch
  Logs (``/aws/sagemaker/Endpoints/<name>``) where CloudWatch extracts the metrics. No network or
  PutMetricData permission needed (endpoints under network isolation), but only inside the
  endpoint and only when the process's stdout reaches the container log.
docs/watch.md says why ``api`` is the default.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import IO, Any, Callable, Sequence

from .metrics import Batch, Point

log = logging.getLogger(__name__)

MODES = ("api", "emf")
MAX_PER_CALL = 500  # PutMetricData takes 1000 metrics / 1 MB per call; stay well under


class CloudWatchPublisher:
    def __init__(self, namespace: str, *, mode: str = "api", client: Any = None, stream: IO[str] | None = None,
                 region: str | None = None) -> None:
        if not namespace or len(namespace) > 255 or namespace.startswith(":") or "AWS/" == namespace[:4]:
            raise ValueError(f"--cloudwatch {namespace!r}: a namespace of 1-255 characters, not starting with 'AWS/' or ':'")
        if mode not in MODES:
            raise ValueError(f"--cloudwatch-mode {mode!r}: expected one of {', '.join(MODES)}")
        self.namespace, self.mode = namespace, mode
        self._client, self._region = client, region
        self.stream = stream
        self.published = 0

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            # Endpoint: boto3's own settings (AWS_ENDPOINT_URL_CLOUDWATCH, AWS_ENDPOINT_URL).
            self._client = boto3.client("cloudwatch", region_name=self._region,
                                        config=Config(connect_timeout=3, read_timeout=15, retries={"max_attempts": 3, "mode": "standard"}))
        return self._client

    def publish(self, batch: Batch | Sequence[Point]) -> int:
        points = batch.points if isinstance(batch, Batch) else list(batch)
        if not points:
            return 0
        if self.mode == "emf":
            self._emf(points)
        else:
            for i in range(0, len(points), MAX_PER_CALL):
                self.client.put_metric_data(Namespace=self.namespace, MetricData=[_datum(p) for p in points[i:i + MAX_PER_CALL]])
        self.published += len(points)
        return len(points)

    def _emf(self, points: Sequence[Point]) -> None:
        out = self.stream or sys.stdout
        for p in points:  # one event per point: each has its own dimensions and timestamp
            dims = p.dims()
            event = {"_aws": {"Timestamp": p.timestamp_ms, "CloudWatchMetrics": [
                {"Namespace": self.namespace, "Dimensions": [list(dims)], "Metrics": [{"Name": p.name, "Unit": p.unit}]}]},
                p.name: p.value, **dims}
            out.write(json.dumps(event, separators=(",", ":")) + "\n")
        out.flush()


def _datum(p: Point) -> dict[str, Any]:
    import datetime as dt

    return {"MetricName": p.name, "Value": p.value, "Unit": p.unit,
            "Timestamp": dt.datetime.fromtimestamp(p.timestamp_ms / 1000, dt.timezone.utc),
            "Dimensions": [{"Name": k, "Value": v} for k, v in p.dimensions]}


Publisher = Callable[[Batch], int]


def add_publish_args(p: argparse.ArgumentParser) -> None:
    """``--cloudwatch NAMESPACE`` and ``--cloudwatch-mode`` (``watch`` and ``sidecar``)."""
    p.add_argument("--cloudwatch", default=os.environ.get("MONITORING_CLOUDWATCH_NAMESPACE") or None, metavar="NAMESPACE",
                   help="also publish to CloudWatch under this namespace (default: $MONITORING_CLOUDWATCH_NAMESPACE)")
    p.add_argument("--cloudwatch-mode", choices=MODES, default=os.environ.get("MONITORING_CLOUDWATCH_MODE", "api"),
                   help="api: PutMetricData (needs network + cloudwatch:PutMetricData); emf: Embedded Metric Format "
                        "JSON lines on stdout (default: $MONITORING_CLOUDWATCH_MODE or api)")


def publishers_from(namespace: str | None, mode: str) -> list[Callable[[Batch], int]]:
    return [CloudWatchPublisher(namespace, mode=mode).publish] if namespace else []
