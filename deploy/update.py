"""`deploy update`: new model versions next to the old ones, then the alias switch.

Order matters, so a caller never resolves an alias to an object that is not there:
check (tarballs vs manifest, weights) -> upload the versioned tarballs (unchanged ones are
skipped: same content, same name) -> rewrite aliases.json. The endpoint itself needs no
change for a new model version: an MME loads any TargetModel under its ModelDataUrl.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from deploy import manifest as manifest_mod
from deploy import upload, versions, weights
from deploy.errors import DeployError


@dataclass(frozen=True)
class Switch:
    model: str
    tarball: str
    previous: str | None


def check_versioned(manifest: dict) -> None:
    unversioned = sorted(m for m, e in manifest["models"].items() if not e.get("version"))
    if unversioned:
        raise DeployError(f"{', '.join(unversioned)}: packaged without a version; `deploy update` uploads "
                          "versioned tarballs only (deploy package --versioned)")


def update_models(s3: Any, bucket: str, prefix: str, dist: str | Path, *, allow_test_weights: bool,
                  log: Callable[[str], None] = print, **upload_kwargs: Any) -> list[Switch]:
    """Upload dist/'s versioned tarballs and point each model's alias at its new version."""
    manifest = manifest_mod.load_manifest(dist)
    check_versioned(manifest)
    weights.require_deployable(manifest, allow_test=allow_test_weights)
    for model, (origin, _) in weights.check_manifest_weights(manifest, allow_test=True).items():
        log(f"weights {model}: {origin}")
    broken = {name: p for name, p in manifest_mod.check_dist(dist).items() if p}
    if broken:
        raise DeployError("tarballs do not match the manifest: " + "; ".join(
            f"{name}: {', '.join(p)}" for name, p in sorted(broken.items())))
    upload.upload_dist(s3, bucket, prefix, dist, log=log, **upload_kwargs)
    doc = versions.read_aliases(s3, bucket, prefix)
    switches = []
    for model, entry in sorted(manifest["models"].items()):
        previous = versions.switch(doc, model, entry["tarball"], entry["version"], entry["sha256"])
        before = previous.get("current") if previous else None
        switches.append(Switch(model, entry["tarball"], before))
        log(f"alias {model} -> {entry['tarball']}" + (f" (was {before})" if before and before != entry["tarball"] else
                                                      " (unchanged)" if before else " (new)"))
    versions.write_aliases(s3, bucket, prefix, doc)
    return switches
