"""Settings of the local MME: command-line flags, each with an `MME_*` environment default."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

from deploy.safe_extract import DEFAULT_MAX_MEMBERS

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class MMEConfig:
    model_data_url: str | None = None  # local dir, file:// dir, or s3://bucket/prefix/
    allowed_model_roots: tuple[str, ...] = ()  # POST /models may load from these too (besides model_data_url)
    host: str = "127.0.0.1"
    port: int = 8080  # 0: pick a free port
    work_dir: Path = ROOT / "var" / "mme"
    memory_budget_mb: float | None = None  # None: no LRU eviction
    footprint: str = "rss"  # "rss": stub processes' RSS (disk size until found); "disk": extracted size
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    endpoint_name: str | None = None  # None: accept any /endpoints/<name>/invocations
    triton_url: str | None = None  # attach to a running explicit-mode tritonserver instead of starting one
    # That server's control key (docs/security.md); None: $TRITON_CONTROL_KEY. A server we start
    # gets a fresh one. Never a flag: a command line is readable by every local user.
    triton_control_key: str | None = field(default=None, repr=False)
    triton_http_port: int = 0  # 0: a free port
    triton_grpc_port: int = 0
    triton_metrics_port: int = 0
    triton_start_timeout_s: float = 120.0
    load_timeout_s: float = 600.0
    infer_timeout_s: float = 600.0
    max_model_mb: float = 64 * 1024.0  # extracted bytes per tarball (deploy.safe_extract limit)
    max_members: int = DEFAULT_MAX_MEMBERS
    capture_store: str | None = None  # None: no capture; a directory or s3://bucket/prefix
    capture_spool: Path = ROOT / "var" / "spool"
    sidecar_metrics_port: int = 8090
    triton_env: dict[str, str] = field(default_factory=dict)
    triton_args: tuple[str, ...] = ()

    @property
    def repository(self) -> Path:
        return Path(self.work_dir) / "repository"

    @property
    def budget_bytes(self) -> int | None:
        return None if self.memory_budget_mb is None else int(self.memory_budget_mb * 1024 * 1024)


def _env(name: str, default=None):
    value = os.environ.get(name)
    return default if value in (None, "") else value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = MMEConfig()
    a = parser.add_argument
    a("--model-data-url", default=_env("MME_MODEL_DATA_URL"),
      help="where TargetModel tarballs live: a directory, file:///dir or s3://bucket/prefix/ [MME_MODEL_DATA_URL]")
    a("--allowed-model-root", action="append", default=[p for p in _env("MME_ALLOWED_MODEL_ROOTS", "").split(os.pathsep) if p],
      help="POST /models may also load from under this directory or s3:// prefix (repeatable) [MME_ALLOWED_MODEL_ROOTS]")
    a("--host", default=_env("MME_HOST", d.host), help="bind address [MME_HOST]")
    a("--port", type=int, default=int(_env("MME_PORT", _env("SAGEMAKER_BIND_TO_PORT", d.port))),
      help="endpoint port (0: free port) [MME_PORT, SAGEMAKER_BIND_TO_PORT]")
    a("--work-dir", type=Path, default=Path(_env("MME_WORK_DIR", d.work_dir)),
      help="repository/, staging/, downloads/, log/ live here [MME_WORK_DIR]")
    a("--memory-budget-mb", type=float, default=_env("MME_MEMORY_BUDGET_MB"),
      help="unload least-recently-used models above this total footprint [MME_MEMORY_BUDGET_MB]")
    a("--footprint", choices=("rss", "disk"), default=_env("MME_FOOTPRINT", d.footprint),
      help="model footprint: RSS of its Python stub processes, or extracted size on disk [MME_FOOTPRINT]")
    a("--s3-endpoint-url", default=_env("MME_S3_ENDPOINT_URL"), help="S3 endpoint (moto, MinIO) [MME_S3_ENDPOINT_URL]")
    a("--s3-region", default=_env("MME_S3_REGION", _env("AWS_DEFAULT_REGION", d.s3_region)))
    a("--endpoint-name", default=_env("MME_ENDPOINT_NAME"),
      help="only answer /endpoints/<this>/invocations (default: any name) [MME_ENDPOINT_NAME]")
    a("--triton-url", default=_env("MME_TRITON_URL"),
      help="attach to a running tritonserver (explicit model control, --model-repository=<work-dir>/repository) "
           "instead of starting one [MME_TRITON_URL]")
    a("--triton-http-port", type=int, default=int(_env("MME_TRITON_HTTP_PORT", 0)), help="0: free port")
    a("--triton-grpc-port", type=int, default=int(_env("MME_TRITON_GRPC_PORT", 0)), help="0: free port")
    a("--triton-metrics-port", type=int, default=int(_env("MME_TRITON_METRICS_PORT", 0)), help="0: free port")
    a("--load-timeout", type=float, default=float(_env("MME_LOAD_TIMEOUT_S", d.load_timeout_s)))
    a("--capture-store", default=_env("CAPTURE_STORE", str(ROOT / "var" / "store")),
      help="capture store the models' sidecar writes: directory or s3://bucket/prefix [CAPTURE_STORE]")
    a("--capture-spool", type=Path, default=Path(_env("CAPTURE_SPOOL_DIR", d.capture_spool)),
      help="capture spool directory [CAPTURE_SPOOL_DIR]")
    a("--sidecar-metrics-port", type=int, default=int(_env("CAPTURE_SIDECAR_METRICS_PORT", d.sidecar_metrics_port)),
      help="the sidecar's Prometheus port (-1: none) [CAPTURE_SIDECAR_METRICS_PORT]")
    a("--no-capture", action="store_true", help="serve without monitoring capture")
    a("--max-model-mb", type=float, default=float(_env("MME_MAX_MODEL_MB", d.max_model_mb)),
      help="refuse tarballs that extract to more than this [MME_MAX_MODEL_MB]")


def from_args(args: argparse.Namespace) -> MMEConfig:
    budget = args.memory_budget_mb
    return MMEConfig(
        model_data_url=args.model_data_url, allowed_model_roots=tuple(args.allowed_model_root), host=args.host, port=args.port, work_dir=Path(args.work_dir),
        memory_budget_mb=float(budget) if budget not in (None, "") else None, footprint=args.footprint,
        s3_endpoint_url=args.s3_endpoint_url, s3_region=args.s3_region, endpoint_name=args.endpoint_name,
        triton_url=args.triton_url, triton_http_port=args.triton_http_port,
        triton_grpc_port=args.triton_grpc_port, triton_metrics_port=args.triton_metrics_port,
        load_timeout_s=args.load_timeout, max_model_mb=args.max_model_mb,
        capture_store=None if args.no_capture else args.capture_store, capture_spool=Path(args.capture_spool),
        sidecar_metrics_port=args.sidecar_metrics_port,
    )
