"""A project whose lake's data is in object storage (``KLAW_LAKE__DATA=s3://...``), run by the
real ``klaw`` executable against moto's S3 API on loopback: runs, resumes that read a snapshot
back, the process executor writing from its workers, and the start check that refuses to run
(exit 2, no traceback) when the bucket or the credentials are wrong."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ..s3 import SECRET, MotoS3, enforcing_credentials
from .driver import Background, assert_error, attempts_by_stage, env, klaw, write_project
from .test_resume import TWO_STAGES

NO_AWS = {  # no credentials of this machine's AWS set-up may leak into a test
    "AWS_ACCESS_KEY_ID": "",
    "AWS_SECRET_ACCESS_KEY": "",
    "AWS_SESSION_TOKEN": "",
    "AWS_ENDPOINT_URL": "",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def lake_env(s3: MotoS3, bucket: str, **extra: str) -> dict[str, str]:
    return {**NO_AWS, **s3.env(), "KLAW_LAKE__DATA": f"s3://{bucket}/lake", **extra}


@pytest.mark.slow
def test_a_run_and_its_resume_keep_the_lake_in_the_bucket(
    tmp_path: Path, moto_s3: MotoS3, s3_bucket: str
) -> None:
    project = write_project(tmp_path, {"two": TWO_STAGES})
    settings = lake_env(moto_s3, s3_bucket)
    (project / "fail.marker").touch()
    first = klaw(project, "run", "two", "-o", "json", extra_env=settings)
    assert first.returncode == 1, str(first)
    failed = first.json()
    snapshot = attempts_by_stage(failed)["a"][0]["snapshot_id"]
    assert isinstance(snapshot, int)
    parquet = [key for key in moto_s3.keys(s3_bucket, "lake/") if key.endswith(".parquet")]
    assert len(parquet) == 1, parquet  # a's snapshot

    (project / "fail.marker").unlink()
    resumed = klaw(
        project,
        "run",
        "two",
        "--resume",
        failed["run"]["run_id"],
        "-o",
        "json",
        extra_env=settings,
    )
    assert resumed.returncode == 0, str(resumed)
    attempts = attempts_by_stage(resumed.json())
    assert "a" not in attempts or attempts["a"][-1]["snapshot_id"] == snapshot  # reused
    assert (project / "a.count").read_text() == "1"  # a did not run again
    assert [x["state"] for x in attempts["b"]] == ["succeeded"]  # read a's snapshot from S3

    shown = klaw(project, "assets", "show", "b", "-o", "json", extra_env=settings)
    assert shown.returncode == 0, str(shown)
    assert len([k for k in moto_s3.keys(s3_bucket, "lake/") if k.endswith(".parquet")]) == 2
    assert not (project / "s3:").exists()  # no local folder named after the URL
    for result in (first, resumed, shown):
        assert SECRET not in result.stdout + result.stderr


@pytest.mark.slow
def test_the_process_executor_writes_to_the_bucket_from_its_workers(
    tmp_path: Path, moto_s3: MotoS3, s3_bucket: str
) -> None:
    project = write_project(tmp_path, {"two": TWO_STAGES})
    settings = lake_env(moto_s3, s3_bucket)
    done = klaw(project, "run", "two", "--executor", "process", "-o", "json", extra_env=settings)
    assert done.returncode == 0, str(done)
    attempts = attempts_by_stage(done.json())
    assert all(isinstance(attempts[s][0]["snapshot_id"], int) for s in ("a", "b"))
    assert len([k for k in moto_s3.keys(s3_bucket, "lake/") if k.endswith(".parquet")]) == 2


def test_a_missing_bucket_stops_klaw_run_before_anything_runs(
    tmp_path: Path, moto_s3: MotoS3
) -> None:
    project = write_project(tmp_path, {"two": TWO_STAGES})
    settings = lake_env(moto_s3, "no-such-bucket")
    result = klaw(project, "run", "two", extra_env=settings)
    assert_error(result, 2, "bucket 'no-such-bucket' does not exist", "s3://no-such-bucket/lake")
    assert not (project / "a.count").exists()  # no stage ran
    runs = klaw(project, "runs", "list", "-o", "json", extra_env=settings)
    assert runs.json() == []  # nor was a run recorded


@pytest.mark.slow
def test_a_missing_bucket_stops_klaw_api_and_klaw_dev_before_they_serve(
    tmp_path: Path, moto_s3: MotoS3
) -> None:
    project = write_project(tmp_path, {"two": TWO_STAGES})
    settings = lake_env(moto_s3, "no-such-bucket", KLAW_HTTP__TOKENS="admin:t")
    api = Background(project, "api", "--port", "0", extra_env=settings).finish()
    dev = Background(project, "dev", "--port", "0", "--api-port", "0", extra_env=settings)
    for result in (api, dev.finish()):
        assert_error(result, 2, "bucket 'no-such-bucket' does not exist")
        assert "listening" not in result.stdout


@pytest.mark.slow
def test_wrong_credentials_stop_klaw_run_and_klaw_server_without_showing_the_secret(
    tmp_path: Path, moto_s3: MotoS3, s3_bucket: str
) -> None:
    project = write_project(tmp_path, {"two": TWO_STAGES})
    wrong = lake_env(
        moto_s3, s3_bucket, KLAW_LAKE__S3__KEY_ID="AKIAWRONGKEY", KLAW_FLIGHT__TOKENS="t"
    )
    with enforcing_credentials(moto_s3):
        ran = klaw(project, "run", "two", extra_env=wrong)
        served = Background(project, "server", "--port", "0", extra_env=wrong).finish()
    for result in (ran, served):
        assert_error(result, 2, "access denied", f"s3://{s3_bucket}/lake", "KLAW_LAKE__S3__KEY_ID")
        assert SECRET not in result.stdout + result.stderr
    assert not (project / "a.count").exists()


def test_the_aws_variables_are_the_fallback(
    tmp_path: Path, moto_s3: MotoS3, s3_bucket: str
) -> None:
    project = write_project(tmp_path, {"two": TWO_STAGES})
    settings = {
        **NO_AWS,
        "KLAW_LAKE__DATA": f"s3://{s3_bucket}/lake",
        "AWS_ENDPOINT_URL": moto_s3.endpoint,
        "AWS_ACCESS_KEY_ID": "awskey",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_REGION": "us-east-1",
    }
    done = klaw(project, "run", "two", extra_env=settings)
    assert done.returncode == 0, str(done)
    assert SECRET not in done.stdout + done.stderr


def test_a_local_lake_imports_nothing_for_object_storage(tmp_path: Path) -> None:
    project = write_project(tmp_path, {"two": TWO_STAGES})
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from klaw.service.orchestrator import Orchestrator\n"
        f"orch = Orchestrator.open(Path({str(project)!r}))\n"
        "orch.check_lake()\n"
        "print('klaw.storage.objects' in sys.modules, 'duckdb' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env(), capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["False", "False"], done
