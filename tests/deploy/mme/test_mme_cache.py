"""The MME model cache's pinning under a memory budget (deploy/mme/cache.py), without Triton.

The one fault these tests need is a Triton load that is still running while other requests
arrive, at a moment the test chooses: a stand-in for TritonControl whose `load` waits for the
test to open a gate. Fetch, safe copy, the footprint (extracted size on disk), the LRU choice and
the bookkeeping are the real ModelCache and ModelSource.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from deploy.mme.cache import ModelCache
from deploy.mme.errors import LoadFailed
from deploy.mme.source import ModelSource
from tests.conftest import wait_for


class GatedTriton:
    """Stands in for TritonControl: `load(name)` returns once the test opens `gate(name)`."""

    def __init__(self) -> None:
        self.gates: dict[str, threading.Event] = {}
        self.loaded: set[str] = set()
        self.waiting: set[str] = set()  # loads that reached their gate: the cache has counted their footprint

    def gate(self, name: str) -> threading.Event:
        return self.gates.setdefault(name, threading.Event())

    def load(self, name: str, timeout: float | None = None) -> None:
        self.waiting.add(name)
        assert self.gate(name).wait(60), f"the test never opened the gate of {name}"
        self.loaded.add(name)

    def unload(self, name: str, timeout: float = 30.0) -> None:
        self.loaded.discard(name)

    def wait_unloaded(self, name: str, timeout: float) -> bool:
        return name not in self.loaded

    def stub_rss(self, name: str) -> int | None:
        return None


class FailingTriton(GatedTriton):
    """A load that fails once the gate opens, as Triton answers a model that runs out of memory."""

    def load(self, name: str, timeout: float | None = None) -> None:
        assert self.gate(name).wait(60), f"the test never opened the gate of {name}"
        raise LoadFailed(f"Triton failed to load model {name!r}: out of memory", 507)


def model_dir(root: Path, name: str) -> Path:
    """Model data as an extracted directory: <root>/<name>-data/<name>/config.pbtxt + 100 kB."""
    folder = root / f"{name}-data" / name
    (folder / "1").mkdir(parents=True)
    (folder / "config.pbtxt").write_text(f'name: "{name}"\nbackend: "python"\n')
    (folder / "1" / "weights.bin").write_bytes(b"\0" * 100_000)
    return folder.parent


@pytest.fixture
def gates():
    """Every gate a test made, opened at teardown: a failed test leaves no request thread blocked."""
    made: list[GatedTriton] = []
    yield made
    for triton in made:
        for gate in triton.gates.values():
            gate.set()


def in_flight(cache: ModelCache, key: str) -> int | None:
    return next((m["inFlight"] for m in cache.stats()["models"] if m["modelName"] == key), None)


def test_requests_waiting_for_a_load_are_pinned_so_it_is_not_evicted_before_they_run(tmp_path, gates):
    triton = GatedTriton()
    gates.append(triton)
    cache = ModelCache(triton, ModelSource(None, tmp_path / "downloads"), work_dir=tmp_path / "work",
                       budget_bytes=150_000, footprint="disk", load_timeout=60)  # one model fits, two do not
    urls = {name: str(model_dir(tmp_path, name)) for name in ("a", "b")}
    got: dict[str, object] = {}
    go_release = triton.gate("test: release a's second request")

    def request(tag: str, key: str, hold: threading.Event | None = None) -> None:
        rec = cache.acquire(key, url=urls[key])
        got[tag] = rec
        if hold is not None:
            assert hold.wait(60)
        cache.release(rec)

    # b's load is running (in flight, not evictable); a's load starts over budget, then a second
    # request for a waits for that load.
    threads = [threading.Thread(target=request, args=("b", "b"))]
    threads[0].start()
    wait_for(lambda: in_flight(cache, "b") == 1, 30, "b loading")
    # In flight is not enough: b's footprint counts once its data is fetched and its load called.
    wait_for(lambda: "b" in triton.waiting, 30, "b's load at its gate")
    loader = threading.Thread(target=request, args=("a1", "a"))
    loader.start()
    wait_for(lambda: in_flight(cache, "a") == 1, 30, "a loading")
    waiter = threading.Thread(target=request, args=("a2", "a", go_release))
    waiter.start()
    threads += [loader, waiter]
    # The waiting request counts in flight before the load ends: whenever its thread gets to run,
    # the loading request's release (which enforces the budget, b still loading) cannot evict a.
    wait_for(lambda: in_flight(cache, "a") == 2, 30, "the request waiting for a's load to be pinned")
    triton.gate("a").set()
    loader.join(60)
    assert got["a1"].state == "READY" and cache.stats()["evictions"].get("a", 0) == 0
    wait_for(lambda: "a2" in got, 30, "the waiting request to get a")
    assert got["a2"] is got["a1"]  # served by the load it waited for: one load, no thrash
    # Once its last request is released, a is idle and b (loading) is in flight: now a goes.
    go_release.set()
    waiter.join(60)
    assert cache.stats()["evictions"] == {"a": 1}
    triton.gate("b").set()
    for t in threads:
        t.join(60)
    stats = cache.stats()
    assert stats["loads"] == {"a": 1, "b": 1} and [m["modelName"] for m in stats["models"]] == ["b"]


def test_a_failed_load_unpins_and_fails_its_waiters_too(tmp_path, gates):
    triton = FailingTriton()
    gates.append(triton)
    cache = ModelCache(triton, ModelSource(None, tmp_path / "downloads"), work_dir=tmp_path / "work",
                       budget_bytes=150_000, footprint="disk", load_timeout=60)
    url = str(model_dir(tmp_path, "a"))
    errors: dict[str, str] = {}

    def request(tag: str) -> None:
        try:
            cache.acquire("a", url=url)
        except Exception as exc:  # noqa: BLE001 - the test reads the message
            errors[tag] = str(exc)

    threads = [threading.Thread(target=request, args=(t,)) for t in ("first", "second")]
    threads[0].start()
    wait_for(lambda: in_flight(cache, "a") == 1, 30, "a loading")
    threads[1].start()
    wait_for(lambda: in_flight(cache, "a") == 2, 30, "the second request waiting for a's load")
    triton.gate("a").set()
    for t in threads:
        t.join(60)
    assert set(errors) == {"first", "second"} and all("out of memory" in e for e in errors.values()), errors
    assert cache.stats()["models"] == []
