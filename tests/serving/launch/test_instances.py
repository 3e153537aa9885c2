"""`--instances N`: a derived repository whose configs run N instances per model, weights linked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from serving import MODEL_NAMES
from deploy.pbtxt import with_instance_count
from serving.launch.instances import instance_repository
from serving.launch.server import ROOT, TritonProcess, main
from serving.runtime.capacity.admission import instance_count, read_policy

REPO = ROOT / "model_repository"


def parse(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_shipped_configs_keep_everything_but_the_count(model):
    text = (REPO / model / "config.pbtxt").read_text()
    one = with_instance_count(text, 1)
    assert instance_count(text) == 2 and instance_count(one) == 1  # the text readers see it too
    before, after = parse(text), parse(one)
    assert [g.count for g in after.instance_group] == [1]
    after.instance_group[0].count = before.instance_group[0].count
    assert after == before  # nothing else changed: batching, queue policy, parameters
    assert read_policy(one) == read_policy(text)
    # as written: only the one line differs, comments kept
    assert [a for a, b in zip(text.splitlines(), one.splitlines()) if a != b] == \
        [line for line in text.splitlines() if line.startswith("instance_group")]


def test_configs_without_a_plain_group_list_are_rewritten_by_protobuf():
    assert [g.count for g in parse(with_instance_count('name: "m"\n', 3)).instance_group] == [3]
    nested = 'name: "m"\ninstance_group [ { count: 2, kind: KIND_GPU, gpus: [0, 1] }, { count: 4 } ]\n'
    out = parse(with_instance_count(nested, 1))
    assert [(g.count, list(g.gpus)) for g in out.instance_group] == [(1, [0, 1]), (1, [])]


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "2"])
def test_a_bad_count_is_refused_naming_it(bad):
    with pytest.raises(ValueError, match="instances"):
        with_instance_count('name: "m"\n', bad)


def test_repository_links_weights_and_rewrites_configs(tmp_path, model_repo):
    out = instance_repository(model_repo, 1, tmp_path / "repo", ["resnet_classifier", "sd_depth"])
    assert sorted(p.name for p in out.iterdir()) == ["resnet_classifier", "sd_depth"]
    for model in ("resnet_classifier", "sd_depth"):
        version = out / model / "1"
        assert version.is_symlink() and os.readlink(version) == str(model_repo.resolve() / model / "1")
        assert (version / "model.py").read_bytes() == (model_repo / model / "1" / "model.py").read_bytes()
        assert not (out / model / "config.pbtxt").is_symlink()
        assert instance_count((out / model / "config.pbtxt").read_text()) == 1
    # Rebuilt from scratch: a model left from an earlier derivation is gone.
    assert [p.name for p in instance_repository(model_repo, 2, out, ["sd_depth"]).iterdir()] == ["sd_depth"]
    assert instance_count((out / "sd_depth" / "config.pbtxt").read_text()) == 2
    assert instance_count((model_repo / "sd_depth" / "config.pbtxt").read_text()) == 2  # the source is untouched


def test_repository_refuses_to_overwrite_its_source_or_a_missing_model(tmp_path, model_repo):
    with pytest.raises(ValueError, match="must not be the repository"):
        instance_repository(model_repo, 1, model_repo, ["sd_depth"])
    with pytest.raises(FileNotFoundError, match="no_such_model"):
        instance_repository(model_repo, 1, tmp_path / "r", ["no_such_model"])


def test_the_server_is_given_the_derived_repository(tmp_path):
    shipped = TritonProcess(log_path=tmp_path / "a" / "tritonserver.log")
    assert f"--model-repository={REPO}" in shipped.command()
    one = TritonProcess(log_path=tmp_path / "b" / "tritonserver.log", instances=1)
    (arg,) = [a for a in one.command() if a.startswith("--model-repository=")]
    served = Path(arg.split("=", 1)[1])
    assert served == tmp_path / "b" / "model_repository-1-instances"
    assert all(instance_count((served / m / "config.pbtxt").read_text()) == 1 for m in MODEL_NAMES)


def test_the_cli_refuses_zero_instances(capsys):
    with pytest.raises(SystemExit):
        main(["start", "--instances", "0"])
    assert "--instances: 0 must be >= 1" in capsys.readouterr().err
