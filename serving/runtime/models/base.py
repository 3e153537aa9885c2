"""The shape every model runtime shares: load → check_inputs → predict → postprocess.

`handle()` is what Triton's `execute` calls: it validates each request on its own, groups the
valid items into as few `predict` calls as compatible shapes allow, and turns every failure
into an error for the requests it concerns only.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections import deque
from contextlib import nullcontext
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, ContextManager

import numpy as np

from serving.runtime.batching import plan_batches
from monitoring.capture.record import Contribution
from serving.runtime.capacity.limits import RequestLimits, Workload, number_parameter
from serving.runtime.device import DeviceSpec, is_out_of_memory, prepare_device, release_memory
from serving.runtime.deadline import now_ms
from serving.runtime.errors import (DeadlineExpiredError, InvalidInputError, NonFiniteOutputError, PipelineError,
                                    ResourceExhaustedError, ServingError)

log = logging.getLogger(__name__)


@dataclass
class RawRequest:
    """The input tensors of one request: name -> numpy array (BYTES tensors are object arrays)."""

    inputs: dict[str, np.ndarray]
    request_id: str = ""
    deadline_ms: int | None = None  # the caller's deadline, epoch ms (serving/runtime/deadline.py)


@dataclass
class Item:
    """One row of a request after validation; runtimes subclass it with what they need."""

    request_index: int
    stats: dict[str, Any] = field(default_factory=dict)  # input metadata for monitoring


@dataclass
class ItemOutput:
    """What `predict` produced for one item."""

    values: dict[str, Any]
    #: record field ("embedding", "text_embedding", "output_embedding") -> this item's row of
    #: the tap that declares it (see `ModelRuntime.taps`); empty unless capture is on
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class RequestResult:
    """The answer to one request: output tensors, or an error; plus what monitoring needs."""

    outputs: dict[str, np.ndarray] | None = None
    error: ServingError | None = None
    items: list[Item] = field(default_factory=list)
    item_outputs: list[ItemOutput] = field(default_factory=list)
    compute_ms: float = 0.0
    wait_ms: float = 0.0  # inside execute(): time until this request's pipeline call started
    batch_size: int = 0
    deadline_ms: int | None = None
    expired: bool = False  # dropped before its pipeline call: its deadline had passed


def classify_failure(exc: BaseException) -> ServingError:
    """Turn an exception raised inside a pipeline into a clear serving error."""
    if isinstance(exc, ServingError):
        return exc
    text = f"{type(exc).__name__}: {exc}"
    if is_out_of_memory(exc):
        return ResourceExhaustedError(f"out of memory while running the pipeline ({text}); retry with a smaller image or batch")
    return PipelineError(f"pipeline failed ({text})")


class ModelRuntime(ABC):
    """Base class. Subclasses declare their inputs and implement the four steps."""

    name: str = ""
    required_inputs: tuple[str, ...] = ()
    optional_inputs: tuple[str, ...] = ()

    def __init__(self, checkpoint_dir: str, device: DeviceSpec | None = None,
                 max_pipeline_batch: int = 8, parameters: dict[str, str] | None = None):
        self.checkpoint_dir = checkpoint_dir
        self.device = device or DeviceSpec.auto()
        self.max_pipeline_batch = max_pipeline_batch
        self.parameters = dict(parameters or {})
        # True once load() has finished (KServe's Model.ready): a failed load leaves it False.
        # Triton's own readiness comes from initialize(); this is the in-process caller's.
        self.ready = False
        # Set by the monitoring hook: predict() then also returns embeddings from forward hooks.
        self.capture_embeddings = False
        self.pipeline_calls = 0  # how many predict() calls ran: lets tests see batching
        # Failures worth a metric (serving.runtime.triton_adapter publishes them) and memory releases.
        # `expired`: requests dropped because their deadline passed before their pipeline call;
        # `finished_late`: requests whose call started in time but ended after their deadline.
        self.counters = {"out_of_memory": 0, "nonfinite_outputs": 0, "memory_releases": 0,
                         "expired": 0, "finished_late": 0}
        self.clock_ms = now_ms  # epoch ms; tests replace it to expire requests deterministically
        # Durations of the latest pipeline calls: a request whose deadline falls before even
        # the fastest of them could end is dropped too (it would be computed for nobody).
        self.recent_call_s: deque[float] = deque(maxlen=8)
        self.limits: RequestLimits | None = None
        # record field -> the Tap that produces it; `_load` declares them (see serving/runtime/embeddings.py)
        self.taps: dict[str, Any] = {}
        # Held around the pipeline calls when another instance of the model shares the device
        # (serving/runtime/baton.py); None: this instance computes whenever it has work.
        self.baton: ContextManager[Any] | None = None

    # -- the four steps -----------------------------------------------------------------
    def load(self) -> None:
        self.limits = self.build_limits()
        fraction = self.limits.memory_fraction if self.limits else number_parameter(self.parameters, "gpu_memory_fraction")
        prepare_device(self.device, fraction)
        self._load()
        self.ready = True

    def build_limits(self) -> RequestLimits | None:
        """GPU memory/time limits for this model (None on CPU unless `gpu_class` names one)."""
        return RequestLimits.from_parameters(self.name, self.parameters, self.device.total_memory())

    def workload(self, items: list[Item]) -> Workload | None:
        """What one pipeline call over `items` (equal batch keys) costs; None: no limits apply."""
        return None

    @abstractmethod
    def _load(self) -> None: ...

    @abstractmethod
    def check_inputs(self, request: RawRequest, request_index: int) -> list[Item]:
        """Validate one request and return its items; raise InvalidInputError on anything wrong."""

    @abstractmethod
    def batch_key(self, item: Item) -> Hashable:
        """Items with equal keys may share one `predict` call."""

    @abstractmethod
    def predict(self, items: list[Item]) -> list[ItemOutput]:
        """Run the model once for all `items`."""

    @abstractmethod
    def postprocess(self, items: list[Item], outputs: list[ItemOutput]) -> dict[str, np.ndarray]:
        """Build one request's output tensors from its items' outputs."""

    @abstractmethod
    def contribution(self, item: Item, output: ItemOutput) -> Contribution:
        """Declare what one served item contributes to its capture record (see
        `monitoring.capture.record`); `embedded()` fills the embeddings."""

    def embedded(self, output: ItemOutput) -> dict[str, tuple[np.ndarray, str]]:
        """This item's embeddings, each with the source its tap declares."""
        return {name: (vector, self.taps[name].source) for name, vector in output.embeddings.items()}

    # -- shared helpers -----------------------------------------------------------------
    def rows(self, request: RawRequest) -> int:
        """Check presence and shape of the declared inputs; return the request's batch size."""
        missing = [n for n in self.required_inputs if request.inputs.get(n) is None]
        if missing:
            raise InvalidInputError(
                f"missing required input(s) {missing}; model '{self.name}' requires {list(self.required_inputs)}"
            )
        known = set(self.required_inputs) | set(self.optional_inputs)
        unknown = sorted(set(request.inputs) - known)
        if unknown:
            raise InvalidInputError(f"unknown input(s) {unknown}; model '{self.name}' accepts {sorted(known)}")
        batch = None
        for name, arr in request.inputs.items():
            if arr is None:
                continue
            if arr.ndim == 1:  # a model without a batch dimension would send [1]
                arr = arr.reshape(-1, 1)
            if arr.ndim != 2 or arr.shape[1] != 1:
                raise InvalidInputError(f"input '{name}': shape {list(arr.shape)} must be [batch, 1]")
            if batch is None:
                batch = arr.shape[0]
            elif arr.shape[0] != batch:
                raise InvalidInputError(
                    f"input '{name}': batch size {arr.shape[0]} differs from the other inputs' {batch}"
                )
        if not batch:
            raise InvalidInputError("request has an empty batch (0 rows)")
        if batch > self.max_pipeline_batch:
            raise InvalidInputError(f"request batch size {batch} exceeds the limit of {self.max_pipeline_batch}")
        return batch

    @staticmethod
    def cell(request: RawRequest, name: str, row: int) -> Any:
        arr = request.inputs.get(name)
        if arr is None:
            return None
        return arr.reshape(arr.shape[0], -1)[row, 0]

    # -- GPU limits -----------------------------------------------------------------------
    def check_limits(self, items: list[Item]) -> None:
        """Refuse a request whose own items would exceed the GPU memory or time limit."""
        if self.limits is None:
            return
        groups: dict[Hashable, list[Item]] = {}
        for it in items:
            groups.setdefault(self.batch_key(it), []).append(it)
        for group in groups.values():
            w = self.workload(group)
            if w is not None:
                self.limits.check(w)

    def group_cap(self, item: Item) -> int:
        """How many items like `item` one pipeline call may hold."""
        w = self.workload([item]) if self.limits is not None else None
        if w is None:
            return self.max_pipeline_batch
        return max(1, min(self.max_pipeline_batch, self.limits.max_items(w.pixels, w.steps, w.encodes_image)))

    def plan(self, items: list[Item]) -> list[list[int]]:
        groups = []
        for group in plan_batches(items, self.batch_key, self.max_pipeline_batch):
            cap = self.group_cap(items[group[0]])
            groups.extend(group[i:i + cap] for i in range(0, len(group), cap))
        return groups

    def is_large(self, group_items: list[Item]) -> bool:
        """Whether a call took over half the memory this instance has for activations: its
        cached blocks are given back afterwards, so one rare large request does not keep
        the allocator's pool at its peak for the rest of the process's life."""
        w = self.workload(group_items) if self.limits is not None else None
        return w is not None and self.limits.headroom_used(w) > 0.5

    def release_memory(self) -> None:
        self.counters["memory_releases"] += 1
        release_memory(self.device)

    # -- the entry point ----------------------------------------------------------------
    def handle(self, requests: list[RawRequest]) -> list[RequestResult]:
        self._handle_start = time.perf_counter()
        results = [RequestResult(deadline_ms=r.deadline_ms) for r in requests]
        items: list[Item] = []
        for i, request in enumerate(requests):
            try:
                results[i].items = self.check_inputs(request, i)
                self.check_limits(results[i].items)
                items.extend(results[i].items)
            except ServingError as exc:
                results[i].error = exc
            except Exception as exc:  # a bug in validation must still fail only this request
                log.exception("check_inputs failed")
                results[i].error = InvalidInputError(f"request could not be validated ({type(exc).__name__}: {exc})")

        outputs: dict[int, ItemOutput] = {}
        if items:
            with self.baton or nullcontext():
                for group in self.plan(items):
                    self._run_group([items[k] for k in group], group, outputs, results)

        for i, result in enumerate(results):
            if result.error is not None:
                continue
            own = [k for k, it in enumerate(items) if it.request_index == i]
            result.item_outputs = [outputs[k] for k in own]
            try:
                result.outputs = self.postprocess(result.items, result.item_outputs)
            except ServingError as exc:
                result.error = exc
            except Exception as exc:
                result.error = classify_failure(exc)
        return results

    def _expire(self, group_items: list[Item], results: list[RequestResult]) -> None:
        """Drop the requests of this call whose caller's deadline has passed: computing them
        would be work for nobody, and it delays everyone queued behind."""
        now = self.clock_ms()
        # The fastest recent call: under-estimates this one, so only hopeless requests are dropped.
        eta_ms = int(min(self.recent_call_s) * 1000) if self.recent_call_s else 0
        for it in group_items:
            r = results[it.request_index]
            if r.error is None and r.deadline_ms is not None and now + eta_ms >= r.deadline_ms:
                when = (f"passed {now - r.deadline_ms} ms before its pipeline call" if now >= r.deadline_ms else
                        f"is {r.deadline_ms - now} ms away, less than the {eta_ms} ms the fastest recent call took")
                r.error = DeadlineExpiredError(
                    f"request expired: its deadline (deadline_ms {r.deadline_ms}) {when} on model '{self.name}'; "
                    "not computed, retry with a later deadline")
                r.expired = True
                self.counters["expired"] += 1

    def _count_late(self, owners: set[int], results: list[RequestResult]) -> None:
        now = self.clock_ms()
        self.counters["finished_late"] += sum(
            1 for i in owners if results[i].deadline_ms is not None and now >= results[i].deadline_ms)

    def _run_group(self, group_items: list[Item], group: list[int], outputs: dict[int, ItemOutput],
                   results: list[RequestResult], oom_retry: bool = True) -> None:
        self._expire(group_items, results)
        live = [(k, it) for k, it in zip(group, group_items) if results[it.request_index].error is None]
        if not live:
            return
        start = time.perf_counter()
        try:
            produced = self.predict([it for _, it in live])
            self.pipeline_calls += 1
        except Exception as exc:
            self.pipeline_calls += 1
            owners = sorted({it.request_index for _, it in live})
            oom = is_out_of_memory(exc)
            if oom:
                self.counters["out_of_memory"] += 1
                # The failed call's blocks stay cached (and fragmented) until released: free
                # them before any retry, or the retry fails for the same reason.
                self.release_memory()
            if isinstance(exc, NonFiniteOutputError):
                self.counters["nonfinite_outputs"] += 1
            if len(owners) > 1:
                # One bad or oversized request must not fail its neighbours: retry each alone.
                log.warning("batched call failed (%s); retrying %d requests one by one", exc, len(owners))
                for owner in owners:
                    sub = [(k, it) for k, it in live if it.request_index == owner]
                    self._run_group([it for _, it in sub], [k for k, _ in sub], outputs, results, oom_retry)
                return
            if oom and oom_retry:
                # Out of memory alone, after a release: one more try, for fragmentation or a
                # neighbour's transient peak; a second OOM is the answer.
                log.warning("request ran out of memory (%s); retrying once after releasing cached memory", exc)
                self._run_group(group_items, group, outputs, results, oom_retry=False)
                return
            results[owners[0]].error = classify_failure(exc)
            log.warning("request failed in pipeline: %s", results[owners[0]].error)
            return
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        self.recent_call_s.append(elapsed_ms / 1000.0)
        if self.is_large([it for _, it in live]):
            self.release_memory()
        elif self.baton is not None and self.device.is_gpu and self.limits is not None:
            # The other instance computes next on this GPU: keep only the weights while idle, so
            # that the two hold one activation set between them (docs/gpu.md, two instances).
            release_memory(self.device)
        self._count_late({it.request_index for _, it in live}, results)
        for (k, it), out in zip(live, produced):
            outputs[k] = out
            results[it.request_index].compute_ms = elapsed_ms
            results[it.request_index].wait_ms = (start - self._handle_start) * 1000.0
            results[it.request_index].batch_size = len(live)
