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
from deploy.__main__ import main
from deploy_testlib import REGION
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


def test_readme_deploy_block_runs_against_moto(repo, moto_url, tmp_path, monkeypatch, capsys):
    iam = boto3.client("iam", region_name=REGION, endpoint_url=moto_url)
    trust = {"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                            "Principal": {"Service": "sagemaker.amazonaws.com"}}]}
    iam.create_role(RoleName="SageMakerRole", AssumeRolePolicyDocument=json.dumps(trust))
    boto3.client("s3", region_name=REGION, endpoint_url=moto_url).create_bucket(Bucket="my-bucket")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photo.png").write_bytes(png(64))
    image = png(32, seed=5)
    queue_canned_response(moto_url, json.dumps({"model_name": "sd_depth", "outputs": [
        {"name": "generated_image", "shape": [1, 1], "datatype": "BYTES",
         "data": [base64.b64encode(image).decode()]}]}), "application/json")

    ran = []
    for line in readme_commands():
        argv = shlex.split(line, comments=True)
        capsys.readouterr()
        if argv == ["make", "env"]:
            rc = _build_env_main()(["--method", "pip", "--no-pip", "--package", str(ROOT / "serving"),
                                    "--out", "dist/python_env.tar.gz", "--work-dir", str(tmp_path / "work")])
        elif argv[:2] == ["make", "package"]:
            assert argv[2:] == ["ENV_TARBALL=dist/python_env.tar.gz"]
            rc = main(["package", "--repo", str(repo), "--env-tarball", "dist/python_env.tar.gz",
                       "--no-code-package"]) or main(["check"])
        else:
            assert argv[:3] == [".venv/bin/python", "-m", "deploy"], line
            args = ["ml.g4dn.xlarge" if a == "ml.g5.xlarge" else a for a in argv[3:]]
            if args[0] in AWS_COMMANDS:
                args += ["--endpoint-url", moto_url]
            if args[0] == "create":
                args += ["--poll-interval", "0.1"]
            rc = main(args)
        out, err = capsys.readouterr()
        assert rc == 0, f"{line}\n{out}{err}"
        ran.append((argv[0] if argv[0] == "make" else argv[3], out))
    assert [name for name, _ in ran] == ["make", "make", "check", "upload", "create", "autoscale", "invoke", "delete"]
    outputs = dict(ran[2:])
    assert "OK   image sagemaker-tritonserver:26.05-py3 (Python 3.12, glibc 2.39)" in outputs["check"]
    assert "image: 763104351884.dkr.ecr.us-east-1.amazonaws.com/sagemaker-tritonserver:26.05-py3" in outputs["create"]
    assert (tmp_path / "out" / "generated_image_0.png").read_bytes() == image
