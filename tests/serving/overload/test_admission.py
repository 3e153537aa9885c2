"""Every model's queue policy is the one derived from its time model and the platform deadline."""

from __future__ import annotations

import pytest

from serving.runtime.capacity.admission import (DEFAULT_DEADLINE_S, QueuePolicy, check_repo, derive, instance_count,
                                                read_policy, with_policy)


def test_every_shipped_config_has_the_derived_policy():
    assert check_repo() == []


def test_timeout_leaves_room_for_the_longest_admitted_call():
    p = derive("sd_img2img", 4, deadline_s=DEFAULT_DEADLINE_S, max_request_seconds=45.0)
    assert p.default_timeout_microseconds == 15_000_000
    assert derive("sd_img2img", 4, deadline_s=100.0, max_request_seconds=45.0).default_timeout_microseconds == 55_000_000
    assert p.max_queue_size >= 8  # at least two full batches


def test_longer_deadline_admits_a_longer_queue_for_fast_models():
    short, long = derive("resnet_classifier", 32, 50.0), derive("resnet_classifier", 32, 1000.0)
    assert 64 <= short.max_queue_size <= long.max_queue_size <= 1024


def test_deadline_shorter_than_the_longest_call_is_refused_by_name():
    with pytest.raises(ValueError, match=r"deadline 30 s must exceed max_request_seconds 45 s"):
        derive("sd_img2img", 4, deadline_s=30.0)


def test_policy_is_inserted_then_replaced_inside_dynamic_batching():
    text = 'max_batch_size: 4\ndynamic_batching {\n  max_queue_delay_microseconds: 100\n}\ninput []\n'
    once = with_policy(text, QueuePolicy(7, 2_000_000))
    assert read_policy(once) == {"max_queue_size": "7", "default_timeout_microseconds": "2000000",
                                 "timeout_action": "REJECT", "allow_timeout_override": "true"}
    assert once.index("default_queue_policy") < once.index("}\ninput")
    twice = with_policy(once, QueuePolicy(9, 1))
    assert read_policy(twice)["max_queue_size"] == "9" and twice.count("default_queue_policy") == 1
    assert read_policy(text) is None


def test_instance_count_sums_the_groups_of_the_config_text():
    assert instance_count("name: \"m\"\nmax_batch_size: 4\n") == 1
    assert instance_count("instance_group [ { count: 2, kind: KIND_AUTO } ]") == 2
    assert instance_count("instance_group [\n  { count: 1 },\n  { count: 3, kind: KIND_GPU }\n]") == 4
