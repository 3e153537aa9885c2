import pytest

from serving.runtime.batching import plan_batches


def test_equal_keys_grouped_in_arrival_order():
    keys = ["a", "b", "a", "c", "b", "a"]
    assert plan_batches(keys, lambda k: k, 8) == [[0, 2, 5], [1, 4], [3]]


def test_groups_capped_at_max_batch():
    assert plan_batches(["x"] * 5, lambda k: k, 2) == [[0, 1], [2, 3], [4]]


def test_empty_and_bad_limit():
    assert plan_batches([], lambda k: k, 4) == []
    with pytest.raises(ValueError, match="max_batch: 0 must be >= 1"):
        plan_batches([1], lambda k: k, 0)
