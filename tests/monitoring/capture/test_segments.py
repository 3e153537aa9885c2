"""Spool segments are atomic: a reader never sees a partial one."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from capture_testlib import make_record, spool_segments

import monitoring.capture.segments as segmod
from monitoring.capture import Capturer
from monitoring.capture.segments import encode_segment, normalize_record, read_segment, write_file_atomic


def test_roundtrip_vectors_and_json(tmp_path):
    rec = make_record(3)
    rec["gen_args"] = {"steps": 30, "guidance_scale": np.float32(7.5)}
    rec["text_embedding"] = [0.5, -1.0]
    clean, unknown = normalize_record({**rec, "extra": 1})
    assert unknown == ["extra"]
    path = tmp_path / "s.jsonl"
    write_file_atomic(str(path), encode_segment({"format": 1}, [clean]) + b"not json\n")
    seg = read_segment(str(path))
    assert seg.header == {"format": 1} and seg.bad_lines == 1 and len(seg.records) == 1
    got = seg.records[0]
    np.testing.assert_array_equal(got["embedding"], rec["embedding"])
    np.testing.assert_array_equal(got["text_embedding"], np.array([0.5, -1.0], np.float32))
    assert got["gen_args"] == '{"steps":30,"guidance_scale":7.5}'
    assert got["has_negative_prompt"] is None and got["pred_label"] == "class_3"


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def boom(src, dst):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(segmod.os, "replace", boom)
    with pytest.raises(OSError):
        write_file_atomic(str(tmp_path / "a.jsonl"), b"x" * 100)
    assert list(tmp_path.iterdir()) == []


def test_readers_only_ever_see_complete_segments(tmp_path):
    """While a capturer writes hundreds of segments, every finished one parses completely."""
    cap = Capturer(tmp_path, "m1", batch_size=7, flush_interval_s=0.001)
    n = 1400
    done = threading.Event()

    def produce():
        for i in range(n):
            cap.submit(make_record(i))
        cap.close()
        done.set()

    t = threading.Thread(target=produce)
    t.start()
    checked = set()
    while True:
        finished = done.is_set()
        for p in spool_segments(tmp_path):
            if p in checked:
                continue
            seg = read_segment(str(p))
            assert seg.bad_lines == 0 and seg.header["records"] == len(seg.records) > 0
            checked.add(p)
        if finished:
            break
    t.join()
    assert sum(len(read_segment(str(p)).records) for p in checked) == n
    # partial writes only ever exist as .tmp files, which readers ignore
    (tmp_path / "m1" / "0-1-x-0.jsonl.tmp").write_bytes(b'{"_segment":{}}\n{"request_id": "trunc')
    assert all(p.suffix == ".jsonl" for p in spool_segments(tmp_path))
