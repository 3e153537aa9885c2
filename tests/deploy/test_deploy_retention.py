"""`deploy create --retain-days`: the capture retention rule, as moto's bucket stores it."""

from __future__ import annotations

import pytest
from deploy import retention
from deploy.__main__ import main
from deploy.errors import DeployError
from test_deploy_aws import create_args


def _rules(s3, bucket: str) -> list[dict]:
    return s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]


def test_create_puts_a_lifecycle_rule_on_the_capture_prefix(tmp_path, moto_url, clients, bucket, role_arn, repo):
    s3 = clients["s3"]
    # A rule someone else owns on the same bucket must survive.
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
        {"ID": "tmp-cleanup", "Filter": {"Prefix": "tmp/"}, "Status": "Enabled", "Expiration": {"Days": 1}}]})
    aws = ["--endpoint-url", moto_url]
    assert main(["package", "--repo", str(repo), "--dist", str(tmp_path / "dist"), "--no-code-package"]) == 0
    assert main(["upload", "--bucket", bucket, "--prefix", "mme", "--dist", str(tmp_path / "dist"), *aws]) == 0
    store = f"s3://{bucket}/capture/"
    assert main(create_args("ret-ep", role_arn, bucket, "--env", f"CAPTURE_STORE={store}", "--retain-days", "14",
                            "--no-wait", *aws)) == 0
    rules = {r["ID"]: r for r in _rules(s3, bucket)}
    assert rules["tmp-cleanup"]["Filter"] == {"Prefix": "tmp/"}
    ours = rules["capture-retention:capture"]
    assert ours["Filter"] == {"Prefix": "capture/model="}  # records only: not capture/_monitoring/ (baselines...)
    assert ours["Expiration"] == {"Days": 14} and ours["Status"] == "Enabled"

    # Changing the setting replaces our rule instead of adding a second one.
    retention.put_capture_retention(s3, store, 90)
    rules = _rules(s3, bucket)
    assert len(rules) == 2 and {r["ID"]: r for r in rules}["capture-retention:capture"]["Expiration"] == {"Days": 90}
    assert main(["delete", "--name", "ret-ep", "--no-wait", *aws]) == 0


def test_default_retention_and_bad_values():
    bucket, rule = retention.capture_rule("s3://b/p/q/", retention.DEFAULT_RETAIN_DAYS)
    assert bucket == "b" and rule["Filter"] == {"Prefix": "p/q/model="} and rule["Expiration"] == {"Days": 30}
    for bad in (0, -1, 4000, 1.5):
        with pytest.raises(DeployError, match=r"--retain-days must be a whole number of days from 1 to 3650, got"):
            retention.capture_rule("s3://b/p/", bad)
