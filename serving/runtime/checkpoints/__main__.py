"""`python -m serving.runtime.checkpoints tiny|fetch [--models ...] [--repo model_repository]`."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from serving import MODEL_NAMES
from serving.runtime.checkpoints import provenance


def checkpoint_dir(repo: Path, model: str) -> Path:
    return repo / model / "1" / "checkpoint"


def _revisions(parser: argparse.ArgumentParser, values: list[str], models: list[str]) -> dict[str, str]:
    out = {}
    for value in values:
        model, sep, rev = value.rpartition("=")
        if not sep:
            if len(models) != 1:
                parser.error(f"--revision {value}: say which model (MODEL=REV) when fetching several")
            model = models[0]
        if model not in MODEL_NAMES or not rev:
            parser.error(f"--revision {value}: expected MODEL=REV with MODEL one of {', '.join(MODEL_NAMES)}")
        out[model] = rev
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.runtime.checkpoints", description=__doc__)
    parser.add_argument("action", choices=["tiny", "fetch"],
                        help="tiny: random-weight checkpoints built offline; fetch: real weights from the hub")
    parser.add_argument("--repo", default="model_repository", type=Path)
    parser.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES)
    parser.add_argument("--force", action="store_true", help="rebuild even if a checkpoint exists")
    parser.add_argument("--fp16", action="store_true", help="fetch: the fp16 variant (GPU hosts)")
    parser.add_argument("--source", help="fetch: a hub id, a local diffusers/transformers folder or a single "
                        ".safetensors checkpoint instead of the default (one model)")
    parser.add_argument("--revision", action="append", default=[], metavar="[MODEL=]REV",
                        help="fetch: hub revision (commit sha, tag, branch) instead of the pinned one "
                        "(repeatable; MODEL= may be left out with one --models entry)")
    parser.add_argument("--config", help="fetch --source FILE.safetensors: diffusers folder or hub id with "
                        "the component configs (from_single_file's config=)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if args.source and len(args.models) != 1:
        parser.error("--source needs exactly one --models entry")
    revisions = _revisions(parser, args.revision, args.models)

    for model in args.models:
        out = checkpoint_dir(args.repo, model)
        if out.exists() and not args.force:
            print(f"{model}: {out} exists (use --force to rebuild)")
            continue
        tmp = out.with_name("checkpoint.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        start = time.perf_counter()
        if args.action == "tiny":
            from serving.runtime.checkpoints.tiny import BUILDERS, SEED

            BUILDERS[model](tmp)
            prov = provenance.record(tmp, "tiny-random", builder="serving.runtime.checkpoints.tiny", seed=SEED)
        else:
            from serving.runtime.checkpoints.hub import fetch

            prov = fetch(model, tmp, source=args.source, fp16=args.fp16,
                         revision=revisions.get(model), config=args.config)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)  # a half-written checkpoint is never mistaken for a complete one
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        print(f"{model}: wrote {out} ({size / 1e6:.2f} MB) in {time.perf_counter() - start:.1f}s; "
              f"weights: {provenance.describe(prov)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
