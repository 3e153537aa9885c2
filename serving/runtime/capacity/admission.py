"""Admission control: the Triton queue policy of each model, derived from its time model.

Past capacity a queue without bounds only adds waiting: every request waits its turn however
late, and the model computes for callers who have given up. Triton's `default_queue_policy`
bounds it; this module derives the numbers so that admitted work can finish in time:

* `default_timeout_microseconds` = platform deadline - the longest call the model admits
  (`max_request_seconds`, which `serving.runtime.capacity.limits` enforces): a request that leaves
  the queue before its timeout finishes within the deadline even when its own call is the
  longest allowed. SageMaker ends an invocation after 60 s; other fronts pass `--deadline`.
* `max_queue_size` = what the slowest GPU class serves in that timeout at the model's default
  request (512² output or a 128² upscaler input, default steps, the largest batch that fits):
  a longer queue would only be rejected by the timeout later, after holding memory for it.
  Never below two full batches: one to start the moment the running call ends, one filling
  behind it (P8, sd_img2img at 4x on 2 cores: the instance was busy 48 % of the time with a
  queue of one batch, 78 % with two).
* `timeout_action: REJECT` answers late requests with UNAVAILABLE (HTTP 503) at once, and
  `allow_timeout_override` lets a client's own `timeout` (shorter only) apply.

Measured with tritonserver 2.51 (docs/serving.md "Overload"): a full queue answers HTTP 503 /
gRPC UNAVAILABLE "Exceeds maximum queue size" within milliseconds and is not counted in the
model's statistics; an expired request answers 503 / UNAVAILABLE "Request timeout expired",
counted as a failure, when the scheduler next looks at it (lazily, not at the exact instant).

`python -m serving.runtime.capacity.admission` prints the blocks; `--check` compares them with
`model_repository/*/config.pbtxt` (a test runs it), `--write` updates the files in place.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from serving.runtime.capacity.limits import DEFAULT_MAX_REQUEST_SECONDS, GPU_CLASSES, RequestLimits, Workload

REPO = Path(__file__).resolve().parents[3] / "model_repository"
# SageMaker's InvokeEndpoint gives up after 60 s (not configurable for real-time endpoints).
DEFAULT_DEADLINE_S = 60.0
# The slowest GPU class we deploy on: a queue it can drain in time is drained sooner elsewhere.
SIZING_GPU = "a10g"
MAX_QUEUE_CAP = 1024  # the classifier serves thousands in 15 s; beyond this only memory grows
# DiffusionRuntime.default_steps (not imported: the capacity layer sits below the runtimes)
DEFAULT_STEPS = {"sd_img2img": 30, "sd_depth": 30, "sd_inpaint": 30, "sd_upscale": 30}
DEFAULT_PIXELS = {"sd_upscale": 128 * 128}  # the upscaler's grid is its input
SD_PIXELS = 512 * 512


@dataclass(frozen=True)
class QueuePolicy:
    max_queue_size: int
    default_timeout_microseconds: int

    def pbtxt(self, indent: str = "  ") -> str:
        return (f"{indent}default_queue_policy {{\n"
                f"{indent}  max_queue_size: {self.max_queue_size}\n"
                f"{indent}  default_timeout_microseconds: {self.default_timeout_microseconds}\n"
                f"{indent}  timeout_action: REJECT\n"
                f"{indent}  allow_timeout_override: true\n"
                f"{indent}}}\n")


def default_workload(model: str) -> Workload:
    if model == "resnet_classifier":
        return Workload(0, 1, 0)
    return Workload(DEFAULT_PIXELS.get(model, SD_PIXELS), 1, DEFAULT_STEPS[model])


def derive(model: str, max_batch_size: int, deadline_s: float = DEFAULT_DEADLINE_S,
           max_request_seconds: float = DEFAULT_MAX_REQUEST_SECONDS, gpu: str = SIZING_GPU) -> QueuePolicy:
    """The queue policy of `model` for a platform `deadline_s` (see the module docstring)."""
    if not deadline_s > max_request_seconds:
        raise ValueError(f"deadline {deadline_s:g} s must exceed max_request_seconds {max_request_seconds:g} s: "
                         "otherwise an admitted request could not finish in time")
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size {max_batch_size} must be >= 1")
    timeout_s = deadline_s - max_request_seconds
    limits = RequestLimits(model, GPU_CLASSES[gpu], max_seconds=max_request_seconds)
    w = default_workload(model)
    batch = max(1, min(max_batch_size, limits.max_items(w.pixels, w.steps, w.encodes_image, cap=max_batch_size)))
    call_s = limits.estimate(Workload(w.pixels, batch, w.steps, w.encodes_image)).seconds
    served = math.floor(timeout_s / max(call_s, 1e-6)) * batch
    size = min(MAX_QUEUE_CAP, max(2 * max_batch_size, served))
    return QueuePolicy(int(size), int(round(timeout_s * 1e6)))


# -- config.pbtxt text -----------------------------------------------------------------------
_MAX_BATCH = re.compile(r"^\s*max_batch_size\s*:\s*(\d+)", re.M)
_POLICY = re.compile(r"default_queue_policy\s*\{(?P<body>[^}]*)\}", re.S)
_FIELD = re.compile(r"(\w+)\s*:\s*([\w.]+)")
_GROUPS = re.compile(r"^\s*instance_group\s*\[(?P<body>[^\]]*)\]", re.M)
_COUNT = re.compile(r"\bcount\s*:\s*(\d+)")


def max_batch_size(config_text: str) -> int:
    m = _MAX_BATCH.search(config_text)
    return int(m.group(1)) if m else 0


def instance_count(config_text: str) -> int:
    """How many instances of the model run on one device: the counts of its `instance_group`
    (1 without one). With the compute baton (serving/runtime/baton.py) they take turns, but
    each holds a batch in execution, so that many batches leave the queue before one waits."""
    m = _GROUPS.search(config_text)
    return (sum(int(n) for n in _COUNT.findall(m.group("body"))) or 1) if m else 1


def read_policy(config_text: str) -> dict[str, str] | None:
    """The fields of the `default_queue_policy` block, as text; None without one."""
    m = _POLICY.search(config_text)
    if m is None:
        return None
    body = "\n".join(line.split("#", 1)[0] for line in m.group("body").splitlines())
    return dict(_FIELD.findall(body))


def expected_fields(policy: QueuePolicy) -> dict[str, str]:
    return {"max_queue_size": str(policy.max_queue_size),
            "default_timeout_microseconds": str(policy.default_timeout_microseconds),
            "timeout_action": "REJECT", "allow_timeout_override": "true"}


def with_policy(config_text: str, policy: QueuePolicy) -> str:
    """`config_text` with its queue policy replaced by, or given, `policy` (inside dynamic_batching)."""
    m = _POLICY.search(config_text)
    if m is not None:
        line_start = config_text.rfind("\n", 0, m.start()) + 1
        end = config_text.find("\n", m.end())
        end = len(config_text) if end == -1 else end + 1
        return config_text[:line_start] + policy.pbtxt() + config_text[end:]
    db = re.search(r"dynamic_batching\s*\{", config_text)
    if db is None:
        raise ValueError("config has no dynamic_batching block to hold a queue policy")
    depth, i = 1, db.end()
    while depth:
        depth += {"{": 1, "}": -1}.get(config_text[i], 0)
        i += 1
    close = config_text.rfind("\n", 0, i - 1) + 1  # the line of the closing brace
    return config_text[:close] + policy.pbtxt() + config_text[close:]


def check_repo(repo: Path = REPO, deadline_s: float = DEFAULT_DEADLINE_S) -> list[str]:
    """Problems with the queue policies in `repo` (empty when every model has the derived one)."""
    problems = []
    for config in sorted(repo.glob("*/config.pbtxt")):
        model, text = config.parent.name, config.read_text()
        want = expected_fields(derive(model, max_batch_size(text), deadline_s))
        have = read_policy(text)
        if have != want:
            problems.append(f"{config}: default_queue_policy {have} differs from the derived {want} "
                            f"(python -m serving.runtime.capacity.admission --write)")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m serving.runtime.capacity.admission", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE_S, help="platform deadline, s (default 60)")
    p.add_argument("--repo", type=Path, default=REPO)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--check", action="store_true", help="exit 1 when a config.pbtxt differs")
    g.add_argument("--write", action="store_true", help="update the config.pbtxt files in place")
    a = p.parse_args(argv)
    if a.check:
        problems = check_repo(a.repo, a.deadline)
        print("\n".join(problems) or "all queue policies match")
        return 1 if problems else 0
    for config in sorted(a.repo.glob("*/config.pbtxt")):
        text = config.read_text()
        policy = derive(config.parent.name, max_batch_size(text), a.deadline)
        if a.write:
            config.write_text(with_policy(text, policy))
        print(f"{config.parent.name}: max_queue_size {policy.max_queue_size}, "
              f"timeout {policy.default_timeout_microseconds / 1e6:g} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
