"""Refuse to deploy test weights: the provenance each manifest entry carries, checked.

`deploy package` copies `<model>/1/checkpoint/provenance.json` into the manifest (`weights`);
`deploy check`, `create` and `update` call :func:`check_manifest_weights`, which prints where
each model's weights came from and fails on tiny random weights (or weights of unknown
origin) unless the caller opts in with `--allow-test-weights` / `DEPLOY_ALLOW_TEST_WEIGHTS=1`,
a setting meant for tests, CI and rehearsals only. It also compares the recorded per-file
sha256 with the files the tarball ships, so weights swapped after they were recorded fail.
"""

from __future__ import annotations

import os

from deploy.errors import DeployError
from deploy.package import CHECKPOINT_DIR
from serving.runtime.checkpoints import provenance

ALLOW_ENV = "DEPLOY_ALLOW_TEST_WEIGHTS"
HOW_TO_GET_REAL = ("get real ones with `make weights-real` (pinned hub revisions; FP16=1 for fp16) or "
                   "`python -m serving.runtime.checkpoints fetch --models {model} --force --source DIR|FILE.safetensors`, "
                   "then `make package` again")


def allow_test_weights(flag: bool = False) -> bool:
    """The flag, or DEPLOY_ALLOW_TEST_WEIGHTS=1 (how `make rehearse` and CI opt in)."""
    return flag or os.environ.get(ALLOW_ENV, "").strip().lower() in ("1", "true", "yes")


def entry_problems(model: str, entry: dict, *, allow_test: bool) -> list[str]:
    """Problems with one manifest entry's weights ([] = deployable)."""
    prov = entry.get("weights")
    problems = []
    if provenance.is_test_weights(prov) and not allow_test:
        what = "are tiny random weights made for tests (every output is noise)" if prov else \
            "have no recorded origin (no provenance.json: built before provenance was kept, or by hand)"
        problems.append(f"model {model}: its weights {what}; refusing to deploy them. "
                        + HOW_TO_GET_REAL.format(model=model)
                        + f". Tests and rehearsals opt in with --allow-test-weights or {ALLOW_ENV}=1")
    if prov:
        top = entry.get("triton_name", model)
        shipped = {f["path"]: f["sha256"] for f in entry.get("files", [])}
        for rel, digest in sorted(prov.get("weights", {}).items()):
            path = f"{top}/{CHECKPOINT_DIR}/{rel}"
            if path not in shipped:
                problems.append(f"model {model}: weight file {rel} recorded in provenance.json is not in the tarball")
            elif shipped[path] != digest:
                problems.append(f"model {model}: weight file {rel} has sha256 {shipped[path][:12]}..., "
                                f"provenance.json recorded {digest[:12]}... (changed after it was fetched)")
    return problems


def check_manifest_weights(manifest: dict, *, allow_test: bool, models: list[str] | None = None) -> dict[str, tuple[str, list[str]]]:
    """{model: (where its weights came from, problems)} for the manifest's (or the named) models."""
    out = {}
    for model, entry in sorted(manifest["models"].items()):
        if models is not None and model not in models:
            continue
        out[model] = (provenance.describe(entry.get("weights")), entry_problems(model, entry, allow_test=allow_test))
    return out


def require_deployable(manifest: dict, *, allow_test: bool) -> None:
    """Raise one DeployError listing every model whose weights may not be deployed."""
    problems = [p for _, ps in check_manifest_weights(manifest, allow_test=allow_test).values() for p in ps]
    if problems:
        raise DeployError("\n  ".join(["weights check failed:"] + problems))
