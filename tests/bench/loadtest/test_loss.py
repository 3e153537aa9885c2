"""`match_ids`: capture loss by request id, so that a loss and a duplicate cannot cancel out."""

from __future__ import annotations

import pytest

from bench.loadtest.loss import match_ids


def test_a_loss_and_a_duplicate_do_not_cancel_out():
    m = match_ids(["a", "b", "c"], ["a", "a", "c"])  # 3 answered, 3 records: the totals agree
    assert m.missing == ["b"] and m.duplicated == {"a": 2} and m.unexpected == []
    assert not m.exact and m.stored_once == 1
    assert "1 without a record ['b']" in m.summary() and "1 ids with more than one ['a x2']" in m.summary()


def test_records_of_ids_never_answered_are_reported():
    m = match_ids(["a"], ["a", "watchdog:1", "x"])
    assert m.unexpected == ["watchdog:1", "x"] and m.missing == [] and m.duplicated == {} and not m.exact


def test_every_answer_stored_once_is_exact():
    m = match_ids(iter(["r1", "r2"]), iter(["r2", "r1"]))
    assert m.exact and m.stored_once == 2 and m.answered == 2


def test_summary_shows_only_the_first_ids():
    m = match_ids([f"id-{i}" for i in range(10)], [])
    assert len(m.missing) == 10 and m.summary(limit=2).count("id-") == 2 and "..." in m.summary(limit=2)


def test_repeated_answered_id_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"answered: request ids must be unique, 1 repeat: \['a'\]"):
        match_ids(["a", "b", "a"], ["a", "b"])


def test_a_duplicated_record_of_an_id_never_answered_is_a_duplicate_too():
    m = match_ids(["a"], ["a", "late", "late"])
    assert m.duplicated == {"late": 2} and m.unexpected == ["late"] and m.stored_once == 1
