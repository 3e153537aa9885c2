"""bench/served.py's P4 repository: the shipped config and a no-delay copy, differing only there."""

from __future__ import annotations

import re

from bench.served import build_p4_repo
from serving.launch.server import ROOT


def test_p4_repo_copies_differ_only_in_name_and_queue_delay(tmp_path):
    ckpt = tmp_path / "checkpoint"
    ckpt.mkdir()
    repo = build_p4_repo("sd_img2img", ckpt, tmp_path / "repo")
    assert sorted(p.name for p in repo.iterdir()) == ["sd_img2img", "sd_img2img_nodelay"]
    shipped = (ROOT / "model_repository" / "sd_img2img" / "config.pbtxt").read_text()
    assert (repo / "sd_img2img" / "config.pbtxt").read_text() == shipped
    nodelay = (repo / "sd_img2img_nodelay" / "config.pbtxt").read_text()
    assert re.findall(r'^name: "(\w+)"', nodelay, re.M) == ["sd_img2img_nodelay"]
    assert re.findall(r"max_queue_delay_microseconds: (\d+)", nodelay) == ["0"]
    assert re.findall(r"max_queue_delay_microseconds: (\d+)", shipped) == ["50000"]
    normalise = [(r'^name: "\w+"', "NAME"), (r"max_queue_delay_microseconds: \d+", "DELAY")]
    texts = [shipped, nodelay]
    for pattern, repl in normalise:
        texts = [re.sub(pattern, repl, t, flags=re.M) for t in texts]
    assert texts[0] == texts[1]
    model_py = (ROOT / "model_repository" / "sd_img2img" / "1" / "model.py").read_bytes()
    for name in ("sd_img2img", "sd_img2img_nodelay"):
        # the same model.py (it picks the runtime) and the same checkpoint
        assert (repo / name / "1" / "model.py").read_bytes() == model_py
        assert (repo / name / "1" / "checkpoint").resolve() == ckpt.resolve()
