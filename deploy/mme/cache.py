"""Which models are loaded: fetch + safe extraction + Triton load, once per model, LRU unloading.

Concurrency: one record per model key (the TargetModel value, or the `model_name` of
`POST /models`), guarded by one condition variable. The first caller for an absent key
creates the record in state LOADING and loads it; every other caller for that key waits on
the condition until it is READY (or the load failed: they get the same error), pinned while it
waits (counted in flight), so the model is not evicted before the requests it was loaded for
ran. So 8 concurrent first invocations cause exactly one fetch and one Triton load.

Memory: a model's footprint is the RSS of its Python-backend stub processes, found by their
command line (see `TritonControl.stub_rss`), re-measured before each eviction decision; until
a stub is found (before the first load) the estimate is the last RSS measured for that model
name, else its extracted size on disk. With `footprint="disk"` it is always the extracted size
(deterministic; what the tests use). Before loading, idle least-recently-used models are
unloaded until the estimate fits the budget; after loading, again with the measured value.
Models with requests in flight are never unloaded; if only those remain, the endpoint runs
over budget until they finish (the next release enforces the budget again).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from deploy.mme.errors import (AlreadyLoaded, BadRequest, InsufficientMemory, MMEError, ModelNotFound,
                               TritonUnavailable, UnsafeTarball)
from deploy.mme.source import ModelSource
from deploy.mme.triton import TritonControl
from deploy.safe_extract import TarballError, safe_extract

log = logging.getLogger(__name__)

LOADING, READY, UNLOADING = "LOADING", "READY", "UNLOADING"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,200}$")
_CONFIG_NAME = re.compile(r'^\s*name\s*:\s*"([^"]*)"', re.MULTILINE)


@dataclass(eq=False)
class ModelRecord:
    key: str  # TargetModel / model_name: what callers address
    url: str  # where its data came from
    state: str = LOADING
    triton_name: str | None = None  # the tarball's top folder
    disk_bytes: int = 0
    footprint: int = 0
    footprint_source: str = "none"
    in_use: int = 0
    last_used: float = 0.0
    timings: dict = field(default_factory=dict)
    error: MMEError | None = None

    def describe(self) -> dict:
        return {"modelName": self.key, "modelUrl": self.url, "tritonName": self.triton_name, "state": self.state,
                "footprintBytes": self.footprint, "footprintSource": self.footprint_source,
                "diskBytes": self.disk_bytes, "inFlight": self.in_use, "timings": dict(self.timings)}


def dir_size(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def _copy_model_dir(src: Path, dest: Path, max_bytes: int) -> None:
    """Copy an already-extracted model directory (POST /models with a directory url)."""
    for dirpath, dirnames, filenames in os.walk(src):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            if p.is_symlink():
                raise UnsafeTarball(f"model directory {src}: {p.relative_to(src)} is a symbolic link; refused")
    if dir_size(src) > max_bytes:
        raise BadRequest(f"model directory {src} is larger than the limit of {max_bytes} bytes")
    shutil.copytree(src, dest)


def find_model_dir(extracted: Path, key: str) -> tuple[str, Path]:
    """(Triton model name, its directory) in an extracted tarball: the one top folder with config.pbtxt.

    A tarball with config.pbtxt at its root (no top folder) is accepted too; its name then
    comes from the config's `name:` field or the key.
    """
    entries = sorted(p.name for p in extracted.iterdir())
    dirs = [p for p in extracted.iterdir() if p.is_dir() and (p / "config.pbtxt").is_file()]
    if len(dirs) == 1 and len(entries) == 1:
        name, model_dir = dirs[0].name, dirs[0]
    elif (extracted / "config.pbtxt").is_file():
        m = _CONFIG_NAME.search((extracted / "config.pbtxt").read_text(errors="replace"))
        name = m.group(1) if m else re.sub(r"(\.tar\.gz|\.tgz|\.tar)$", "", key.rsplit("/", 1)[-1])
        model_dir = extracted.parent / f"{extracted.name}.root"
        os.rename(extracted, model_dir)
        extracted.mkdir()
        os.rename(model_dir, extracted / name)
        model_dir = extracted / name
    else:
        raise BadRequest(f"model data for {key!r} must hold one top-level folder <model>/ with a config.pbtxt; "
                         f"found {entries[:10]}")
    if not _NAME.match(name):
        raise BadRequest(f"model data for {key!r}: {name!r} is not a valid Triton model name")
    return name, model_dir


class ModelCache:
    def __init__(self, triton: TritonControl, source: ModelSource, *, work_dir: Path,
                 budget_bytes: int | None = None, footprint: str = "rss", max_bytes: int = 64 * 1024**3,
                 max_members: int = 200_000, load_timeout: float = 600.0) -> None:
        self.triton = triton
        self.source = source
        self.repository = Path(work_dir) / "repository"
        self.staging = Path(work_dir) / "staging"
        self.budget_bytes = budget_bytes
        self.footprint_mode = footprint
        self.max_bytes = max_bytes
        self.max_members = max_members
        self.load_timeout = load_timeout
        self._cond = threading.Condition()
        self._models: dict[str, ModelRecord] = {}
        self._measured: dict[str, int] = {}  # Triton name -> last RSS seen
        self.loads: Counter = Counter()  # key -> Triton loads
        self.unloads: Counter = Counter()  # key -> unloads (evictions + DELETE)
        self.evictions: Counter = Counter()
        self.coldstarts: list[dict] = []

    # -- public API ------------------------------------------------------------------------------
    def acquire(self, key: str, *, url: str | None = None, load: bool = True) -> ModelRecord:
        """Pin model `key` for one request, loading it first if absent and `load` (url: its data)."""
        deadline = time.monotonic() + self.load_timeout
        while True:
            with self._cond:
                rec = self._models.get(key)
                if rec is None:
                    if not load:
                        raise ModelNotFound(f"model {key!r} is not loaded")
                    rec = ModelRecord(key, url or key, in_use=1)
                    self._models[key] = rec
                elif rec.state == READY:
                    rec.in_use += 1
                    rec.last_used = time.monotonic()
                    return rec
                elif rec.state == LOADING:
                    return self._await_load(rec, deadline)
                else:
                    self._wait(rec, deadline, f"model {key!r} to finish {rec.state.lower()}")
                    continue
            self._load(rec)
            return rec

    def release(self, rec: ModelRecord) -> None:
        with self._cond:
            rec.in_use -= 1
            rec.last_used = time.monotonic()
            self._cond.notify_all()
        if self.budget_bytes is not None:
            self.enforce_budget()

    def register(self, key: str, url: str) -> ModelRecord:
        """POST /models: load `key` from `url`; AlreadyLoaded if it is loaded or loading."""
        deadline = time.monotonic() + self.load_timeout
        while True:
            with self._cond:
                rec = self._models.get(key)
                if rec is not None and rec.state != UNLOADING:
                    raise AlreadyLoaded(f"model {key!r} is already loaded")
                if rec is not None:
                    self._wait(rec, deadline, f"model {key!r} to unload")
                    continue
                rec = ModelRecord(key, url, in_use=1)
                self._models[key] = rec
            self._load(rec)
            self.release(rec)
            return rec

    def unload(self, key: str) -> None:
        """DELETE /models/<key>: wait for its in-flight requests, then unload. ModelNotFound if absent."""
        deadline = time.monotonic() + self.load_timeout
        with self._cond:
            while True:
                rec = self._models.get(key)
                if rec is None or rec.state == UNLOADING:
                    raise ModelNotFound(f"model {key!r} is not loaded")
                if rec.state == READY:
                    break
                self._wait(rec, deadline, f"model {key!r} to finish loading")
            rec.state = UNLOADING  # new requests now wait for the unload, then load it again
            while rec.in_use > 0:
                try:
                    self._wait(rec, deadline, f"in-flight requests of {key!r}", until_idle=True)
                except TritonUnavailable:
                    break  # Triton itself lets in-flight requests finish before unloading
        self._unload(rec, evicted=False)

    def get(self, key: str) -> ModelRecord | None:
        with self._cond:
            rec = self._models.get(key)
            return rec if rec is not None and rec.state == READY else None

    def loaded(self) -> list[ModelRecord]:
        with self._cond:
            return sorted((r for r in self._models.values() if r.state == READY), key=lambda r: r.key)

    def note_response(self, rec: ModelRecord, seconds: float) -> None:
        """Record the first response time after a load (cold-start figure)."""
        with self._cond:
            rec.timings.setdefault("first_response_s", round(seconds, 4))

    def stats(self) -> dict:
        with self._cond:
            return {
                "budgetBytes": self.budget_bytes, "footprint": self.footprint_mode,
                "usedBytes": sum(r.footprint for r in self._models.values() if r.state in (LOADING, READY)),
                "models": [r.describe() for r in sorted(self._models.values(), key=lambda r: r.key)],
                "loads": dict(self.loads), "unloads": dict(self.unloads), "evictions": dict(self.evictions),
                "coldstarts": [dict(c) for c in self.coldstarts],
            }

    def unload_all(self) -> None:
        for rec in self.loaded():
            try:
                self.unload(rec.key)
            except ModelNotFound:
                pass

    # -- internals -----------------------------------------------------------------------------
    def _await_load(self, rec: ModelRecord, deadline: float) -> ModelRecord:
        """Wait (lock held) for the load of `rec` another request started, pinned meanwhile.

        The load is for this request too: pinned from now on, the model cannot be evicted between
        READY and this thread's turn to run (with 2 busy cores that turn can come after the
        loading request was served and released, whose release enforces the budget).
        """
        rec.in_use += 1
        try:
            while rec.state == LOADING:  # then READY, or the load failed (_wait raises its error)
                self._wait(rec, deadline, f"model {rec.key!r} to finish loading")
        except BaseException:
            rec.in_use -= 1
            self._cond.notify_all()
            raise
        rec.last_used = time.monotonic()
        return rec

    def _wait(self, rec: ModelRecord, deadline: float, what: str, until_idle: bool = False) -> None:
        """Wait (lock held) for a change to `rec`; raise its load error if its load failed."""
        state = rec.state
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TritonUnavailable(f"timed out waiting for {what}")
        self._cond.wait(min(remaining, 5.0))
        if not until_idle and state == LOADING and rec.error is not None:
            raise rec.error

    def _load(self, rec: ModelRecord) -> None:
        """Fetch, extract, place and load `rec` (state LOADING, pinned once by the caller)."""
        staging = self.staging / uuid.uuid4().hex
        placed: Path | None = None
        try:
            t0 = time.monotonic()
            fetched = self.source.fetch(rec.url, what=f"model {rec.key!r}")
            t1 = time.monotonic()
            try:
                if fetched.path.is_dir():
                    _copy_model_dir(fetched.path, staging / "x", self.max_bytes)
                else:
                    safe_extract(fetched.path, staging / "x", max_total_bytes=self.max_bytes,
                                 max_members=self.max_members)
            except TarballError as exc:
                raise UnsafeTarball(f"model data for {rec.key!r} refused: {exc}") from None
            finally:
                fetched.cleanup()
            t2 = time.monotonic()
            name, model_dir = find_model_dir(staging / "x", rec.key)
            disk = dir_size(model_dir)
            self._claim(rec, name, disk)
            self._make_room(rec)
            target = self.repository / name
            if target.exists():
                shutil.rmtree(target)
            self.repository.mkdir(parents=True, exist_ok=True)
            os.rename(model_dir, target)
            placed = target
            with self._cond:
                self.loads[rec.key] += 1
            try:
                self.triton.load(name, self.load_timeout)
            except MMEError:
                self._quiet_unload(name)
                raise
            t3 = time.monotonic()
            self._measure(rec)
            with self._cond:
                rec.timings.update({"fetch_s": round(t1 - t0, 4), "extract_s": round(t2 - t1, 4),
                                    "load_s": round(t3 - t2, 4)})
                self.coldstarts.append({"model": rec.key, "tritonName": name, "diskBytes": disk,
                                        "timings": rec.timings})
                rec.state = READY
                rec.last_used = time.monotonic()
                self._cond.notify_all()
            placed = None
        except BaseException as exc:
            err = exc if isinstance(exc, MMEError) else MMEError(f"loading model {rec.key!r} failed: {exc}")
            with self._cond:
                rec.error = err
                if self._models.get(rec.key) is rec:
                    del self._models[rec.key]
                self._cond.notify_all()
            if placed is not None:
                shutil.rmtree(placed, ignore_errors=True)
            if err is exc:
                raise
            raise err from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if self.budget_bytes is not None:
            self.enforce_budget()

    def _claim(self, rec: ModelRecord, name: str, disk: int) -> None:
        deadline = time.monotonic() + self.load_timeout
        with self._cond:
            while True:
                other = next((r for r in self._models.values() if r is not rec and r.triton_name == name), None)
                if other is None:
                    break
                if other.state != UNLOADING:
                    raise AlreadyLoaded(f"model data for {rec.key!r} holds Triton model {name!r}, which is "
                                        f"already served as {other.key!r}")
                self._wait(other, deadline, f"Triton model {name!r} to unload", until_idle=True)
            rec.triton_name = name
            rec.disk_bytes = disk
            if self.footprint_mode == "rss" and name in self._measured:
                rec.footprint, rec.footprint_source = self._measured[name], "rss-estimate"
            else:
                rec.footprint, rec.footprint_source = disk, "disk"

    def _measure(self, rec: ModelRecord) -> None:
        if self.footprint_mode != "rss" or rec.triton_name is None:
            return
        rss = self.triton.stub_rss(rec.triton_name)
        if rss:
            with self._cond:
                rec.footprint, rec.footprint_source = rss, "rss"
                self._measured[rec.triton_name] = rss

    def _pick_victims(self, newcomer: ModelRecord | None) -> list[ModelRecord]:
        """Mark idle LRU models UNLOADING until the rest fits the budget (lock held)."""
        budget = self.budget_bytes
        victims: list[ModelRecord] = []
        if budget is None:
            return victims
        used = sum(r.footprint for r in self._models.values() if r.state in (LOADING, READY))
        idle = sorted((r for r in self._models.values()
                       if r.state == READY and r.in_use == 0 and r is not newcomer), key=lambda r: r.last_used)
        while used > budget and idle:
            victim = idle.pop(0)
            victim.state = UNLOADING
            used -= victim.footprint
            victims.append(victim)
        if used > budget:
            log.warning("memory budget %d bytes exceeded (%d used) by models with requests in flight",
                        budget, used)
        return victims

    def _make_room(self, rec: ModelRecord) -> None:
        if self.budget_bytes is None:
            return
        with self._cond:
            if rec.footprint > self.budget_bytes:
                raise InsufficientMemory(
                    f"model {rec.key!r} needs about {rec.footprint / 2**20:.1f} MiB ({rec.footprint_source}), "
                    f"more than the endpoint's memory budget of {self.budget_bytes / 2**20:.1f} MiB")
            victims = self._pick_victims(rec)
        for victim in victims:
            self._unload(victim, evicted=True)

    def enforce_budget(self) -> None:
        if self.footprint_mode == "rss":
            for rec in self.loaded():
                self._measure(rec)
        with self._cond:
            victims = self._pick_victims(None)
        for victim in victims:
            self._unload(victim, evicted=True)

    def _unload(self, rec: ModelRecord, *, evicted: bool) -> None:
        """Unload a record already marked UNLOADING; remove it once Triton reports it gone."""
        try:
            if rec.triton_name:
                log.info("unloading %s (%s)%s", rec.key, rec.triton_name, " to stay in budget" if evicted else "")
                self._quiet_unload(rec.triton_name)
                shutil.rmtree(self.repository / rec.triton_name, ignore_errors=True)
        finally:
            with self._cond:
                if self._models.get(rec.key) is rec:
                    del self._models[rec.key]
                self.unloads[rec.key] += 1
                if evicted:
                    self.evictions[rec.key] += 1
                self._cond.notify_all()

    def _quiet_unload(self, name: str) -> None:
        try:
            self.triton.unload(name)
            if not self.triton.wait_unloaded(name, timeout=self.load_timeout):
                log.warning("Triton model %s still not unloaded", name)
        except TritonUnavailable as exc:
            log.warning("unloading %s: %s", name, exc)
