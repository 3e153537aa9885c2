"""README's "Deploy to SageMaker" block, run line by line against moto.

Commands run as written, with three substitutions the test environment forces: `make env`
builds an env without requirements (the real one downloads GBs; tests/env resolves it for the
same target), `make package` packages a small test repository (what its recipe runs: `deploy
package --env-tarball ...` then `deploy check`), and moto's instance list lacks ml.g5.xlarge.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import shlex
from pathlib import Path

import boto3
from deploy import alarms
from deploy.__main__ import main
from deploy_testlib import REGION
from serving.runtime.checkpoints import provenance
from tests.conftest import png
from test_deploy_aws import queue_canned_response

ROOT = Path(__file__).resolve().parents[2]
AWS_COMMANDS = {"upload", "create", "autoscale", "invoke", "delete"}


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Deploy to SageMaker"):]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL).group(1)
    return [line for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def _build_env_main():
    spec = importlib.util.spec_from_file_location("build_env_for_readme", ROOT / "env" / "build_env.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _run_block(repo, moto_url, tmp_path, capsys, *, real_weights: bool,
               before_delete=None) -> list[tuple[str, int, str, str]]:
    """Run the block line by line; stop at the first failing command. [(command, rc, out, err)].
    `before_delete(name)` sees the state the block leaves before it cleans up."""
    ran = []
    for line in readme_commands():
        argv = shlex.split(line, comments=True)
        capsys.readouterr()
        if argv[:2] == ["make", "weights-real"]:
            assert argv[2:] == ["FP16=1"]
            # No hub here: what `fetch` leaves behind is a checkpoint with hub provenance.
            for ckpt in sorted(repo.glob("*/1/checkpoint")):
                if real_weights:
                    provenance.record(ckpt, "hub", source=f"stabilityai/{ckpt.parts[-3]}", revision="a" * 40,
                                      dtype="float16")
            results = [("make weights-real", 0)]
        elif argv == ["make", "env"]:
            rc = _build_env_main()(["--method", "pip", "--no-pip", "--package", str(ROOT / "serving"),
                                    "--out", "dist/python_env.tar.gz", "--work-dir", str(tmp_path / "work")])
            results = [("make env", rc)]
        elif argv[:2] == ["make", "package"]:
            assert argv[2:] == ["ENV_TARBALL=dist/python_env.tar.gz"]
            # The recipe: `deploy package --env-tarball ...`, then `deploy check`.
            rc = main(["package", "--repo", str(repo), "--env-tarball", "dist/python_env.tar.gz", "--no-code-package"])
            results = [("make package", rc)] + ([("make package: deploy check", main(["check"]))] if rc == 0 else [])
        else:
            assert argv[:3] == [".venv/bin/python", "-m", "deploy"], line
            args = ["ml.g4dn.xlarge" if a == "ml.g5.xlarge" else a for a in argv[3:]]
            if args[0] in AWS_COMMANDS:
                args += ["--endpoint-url", moto_url]
            if args[0] == "create":
                args += ["--poll-interval", "0.1"]
            if args[0] == "update":  # packages the (test) repository; the code is in this checkout
                args += ["--repo", str(repo), "--no-code-package"]
            if args[0] == "delete" and before_delete is not None:
                before_delete(args[args.index("--name") + 1])
            results = [(args[0], main(args))]
        out, err = capsys.readouterr()
        for name, rc in results:
            ran.append((name, rc, out, err))
            if rc != 0:
                return ran
    return ran


def _aws_setup(moto_url, tmp_path, monkeypatch) -> None:
    iam = boto3.client("iam", region_name=REGION, endpoint_url=moto_url)
    trust = {"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                            "Principal": {"Service": "sagemaker.amazonaws.com"}}]}
    try:
        iam.create_role(RoleName="SageMakerRole", AssumeRolePolicyDocument=json.dumps(trust))
    except iam.exceptions.EntityAlreadyExistsException:
        pass
    boto3.client("s3", region_name=REGION, endpoint_url=moto_url).create_bucket(Bucket="my-bucket")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photo.png").write_bytes(png(64))
    # A user's shell has no test opt-in: the block must work (or refuse) without it.
    monkeypatch.delenv("DEPLOY_ALLOW_TEST_WEIGHTS", raising=False)


def test_readme_deploy_block_runs_against_moto(repo, moto_url, tmp_path, monkeypatch, capsys):
    _aws_setup(moto_url, tmp_path, monkeypatch)
    image = png(32, seed=5)
    queue_canned_response(moto_url, json.dumps({"model_name": "sd_depth", "outputs": [
        {"name": "generated_image", "shape": [1, 1], "datatype": "BYTES",
         "data": [base64.b64encode(image).decode()]}]}), "application/json")

    sm = boto3.client("sagemaker", region_name=REGION, endpoint_url=moto_url)
    cw = boto3.client("cloudwatch", region_name=REGION, endpoint_url=moto_url)
    seen = {}

    def before_delete(name: str) -> None:
        env = sm.describe_model(ModelName=f"{name}-model")["PrimaryContainer"]["Environment"]
        seen.update(name=name, store=env.get("CAPTURE_STORE"),
                    alarms=sorted(a["AlarmName"] for a in cw.describe_alarms(AlarmNamePrefix=f"{name}-")["MetricAlarms"]),
                    dashboards=[d["DashboardName"] for d in cw.list_dashboards(DashboardNamePrefix=name)["DashboardEntries"]])

    ran = _run_block(repo, moto_url, tmp_path, capsys, real_weights=True, before_delete=before_delete)
    failed = [(name, out, err) for name, rc, out, err in ran if rc != 0]
    assert not failed, failed
    assert [name for name, *_ in ran] == ["make weights-real", "make env", "make package", "make package: deploy check",
                                          "check", "upload", "create", "autoscale", "update", "invoke", "prune", "delete"]
    outputs = {name: out for name, _, out, _ in ran}
    assert "OK   image sagemaker-tritonserver:26.05-py3 (Python 3.12, glibc 2.39)" in outputs["check"]
    assert f"OK   weights sd_depth: hub stabilityai/sd_depth@{'a' * 40}, float16" in outputs["check"]
    assert "image: 763104351884.dkr.ecr.us-east-1.amazonaws.com/sagemaker-tritonserver:26.05-py3" in outputs["create"]
    # Monitoring is on by default (#21): capture under the endpoint's own prefix, alarms and a
    # dashboard while it runs, none of them after `delete`.
    name = seen["name"]
    assert seen["store"] == f"s3://my-bucket/monitoring/{name}/store"
    assert seen["alarms"] == sorted(f"{name}-{s}" for s in alarms.ALARM_SUFFIXES)
    assert seen["dashboards"] == [f"{name}-monitoring"]
    assert cw.describe_alarms(AlarmNamePrefix=f"{name}-")["MetricAlarms"] == []
    assert cw.list_dashboards(DashboardNamePrefix=name)["DashboardEntries"] == []
    assert f"retention: monitoring/{name}/store/model=* expires after 30 days" in outputs["create"]
    rules = boto3.client("s3", region_name=REGION, endpoint_url=moto_url).get_bucket_lifecycle_configuration(
        Bucket="my-bucket")["Rules"]
    assert [(r["Filter"]["Prefix"], r["Expiration"]["Days"]) for r in rules] == [(f"monitoring/{name}/store/model=", 30)]
    version = json.loads((tmp_path / "dist/versioned/manifest.json").read_text())["models"]["sd_depth"]["tarball"]
    assert version.startswith("sd_depth-") and f"alias sd_depth -> {version} (new)" in outputs["update"]
    assert json.loads(outputs["invoke"].split("\nwrote ")[0])["target_model"] == version  # resolved via the alias
    assert (tmp_path / "out" / "generated_image_0.png").read_bytes() == image


def test_readme_deploy_block_with_test_weights_stops_at_deploy_check(repo, moto_url, tmp_path, monkeypatch, capsys):
    _aws_setup(moto_url, tmp_path, monkeypatch)
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=moto_url)
    before = s3.list_objects_v2(Bucket="my-bucket").get("Contents", [])  # the session's moto is shared
    ran = _run_block(repo, moto_url, tmp_path, capsys, real_weights=False)
    name, rc, out, err = ran[-1]
    assert (name, rc) == ("make package: deploy check", 1)  # packaged fine; the check refuses
    assert "FAIL weights sd_depth: tiny random weights, for tests (outputs are noise)" in err
    assert ("model sd_depth: its weights are tiny random weights made for tests (every output is noise); "
            "refusing to deploy them. get real ones with `make weights-real`") in err
    assert s3.list_objects_v2(Bucket="my-bucket").get("Contents", []) == before  # nothing uploaded
