"""Plan how the items of one `execute` call are grouped into pipeline calls.

Items with equal keys (same shapes, same generation arguments) can share one pipeline call;
the rest run separately. Order inside a group follows arrival order, and groups are capped at
`max_batch` items so one burst cannot exceed the memory a single call was sized for.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

T = TypeVar("T")


def plan_batches(items: Sequence[T], key: Callable[[T], Hashable], max_batch: int) -> list[list[int]]:
    """Return groups of indices into `items`: equal keys together, each group at most `max_batch`."""
    if max_batch < 1:
        raise ValueError(f"max_batch: {max_batch} must be >= 1")
    open_groups: dict[Hashable, list[int]] = {}
    groups: list[list[int]] = []
    for index, item in enumerate(items):
        k = key(item)
        group = open_groups.get(k)
        if group is None or len(group) >= max_batch:
            group = []
            open_groups[k] = group
            groups.append(group)
        group.append(index)
    return groups
