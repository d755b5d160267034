"""``toque data`` against a real MinIO: what a user sees on stdout/stderr and exit codes."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import uuid
from typing import Any

import boto3
import pytest

from toque.cli import main as cli
from toque.local import cluster as local
from toque.local import services


@pytest.fixture
def bucket(minio: services.Minio, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"cli-{uuid.uuid4().hex[:12]}"
    minio.create_bucket(name)  # a plain bucket; test_data_integrity covers locked ones
    for key, value in minio.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("TOQUE_DATA_BUCKET", name)
    monkeypatch.setenv("TOQUE_USER", "tester")
    return name


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write_csv(path: pathlib.Path, text: str) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.usefixtures("bucket")
def test_push_prints_the_pinned_ref_and_a_repeat_says_nothing_was_uploaded(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_csv(tmp_path / "d" / "t.csv", "a,b\n1,x\n")
    code, out, err = run(capsys, "data", "push", str(tmp_path / "d"), "--name", "ds")
    assert code == 0
    assert re.fullmatch(r"ds@sha256:[0-9a-f]{64}\n", out)
    assert "uploaded 1 of 1 files" in err
    code, again, err = run(capsys, "data", "push", str(tmp_path / "d"), "--name", "ds", "-q")
    assert (code, again, err) == (0, out, "")
    code, again, err = run(capsys, "data", "push", str(tmp_path / "d"), "--name", "ds")
    assert again == out
    assert "already stored, nothing uploaded" in err


@pytest.mark.usefixtures("bucket")
def test_ls_show_tag_pull_and_diff(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_csv(tmp_path / "v1" / "t.csv", "age,zip\n1,100\n2,200\n")
    write_csv(tmp_path / "v2" / "t.csv", "age,zip,city\n1.5,A1,Oslo\n2,200,Lima\n3,300,Rome\n")
    _, v1, _ = run(capsys, "data", "push", str(tmp_path / "v1"), "--name", "ds", "--tag", "v1")
    _, v2, _ = run(capsys, "data", "push", str(tmp_path / "v2"), "--name", "ds")
    v1, v2 = v1.strip(), v2.strip()

    assert run(capsys, "data", "ls")[1] == "ds\n"
    code, out, _ = run(capsys, "data", "ls", "ds")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 3
    assert lines[1].split()[2:] == [v1.split("@")[1], "v1"]
    assert lines[2].split()[2:] == [v2.split("@")[1], "latest"]

    code, out, _ = run(capsys, "data", "show", "ds", "--json")
    shown = json.loads(out)
    assert (shown["name"], shown["digest"], shown["rows"], shown["creator"]) == (
        "ds",
        v2.split("@")[1],
        3,
        "tester",
    )
    code, out, _ = run(capsys, "data", "show", "ds:v1")
    assert f"ref:      {v1}" in out
    assert re.search(r"zip\s+int64\s+numeric", out)

    assert run(capsys, "data", "tag", v2, "prod")[1] == f"ds:prod -> {v2}\n"
    code, _, err = run(capsys, "data", "pull", "ds:prod", str(tmp_path / "out"))
    assert code == 0 and "1 files verified" in err
    assert (tmp_path / "out" / "t.csv").read_text() == (tmp_path / "v2" / "t.csv").read_text()

    code, out, _ = run(capsys, "data", "diff", "ds:v1", "ds:prod")
    assert code == 0
    assert "~ file t.csv" in out.splitlines()
    assert "+ column t.csv:city (str, categorical)" in out or "+ column t.csv:city (object" in out
    assert "~ column t.csv:age int64/numeric -> float64/numeric" in out
    assert "~ rows 2 -> 3 (+1)" in out
    code, out, _ = run(capsys, "data", "diff", "ds:v1", "ds:prod", "--json")
    assert json.loads(out)["rows"]["delta"] == 1


@pytest.mark.usefixtures("bucket")
def test_unknown_refs_exit_3_with_one_line(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (["show", "nope"], ["pull", "nope:v9", str(tmp_path)], ["tag", "nope", "x"]):
        code, out, err = run(capsys, "data", *argv)
        assert (code, out) == (3, "")
        assert err.count("\n") == 1 and "nope" in err


def test_corrupted_blob_exits_3_and_leaves_no_file(
    bucket: str, minio: services.Minio, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_csv(tmp_path / "d" / "t.csv", "a\n1\n")
    _, ref, _ = run(capsys, "data", "push", str(tmp_path / "d"), "--name", "ds")
    s3: Any = boto3.client(
        "s3", endpoint_url=minio.endpoint, aws_access_key_id=minio.access_key,
        aws_secret_access_key=minio.secret_key, region_name="us-east-1",
    )  # fmt: skip
    [blob] = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="blobs/")["Contents"]]
    s3.put_object(Bucket=bucket, Key=blob, Body=b"a\n2\n")
    code, _, err = run(capsys, "data", "pull", ref.strip(), str(tmp_path / "out"))
    assert code == 3
    assert "t.csv" in err and "corrupted" in err
    assert os.listdir(tmp_path / "out") == []


def test_unreachable_store_exits_75(minio: services.Minio, tmp_path: pathlib.Path) -> None:
    # A real process: the exit status is what a shell or a Job's restart policy sees.
    env = {
        **os.environ,
        **minio.env(),
        "TOQUE_S3_ENDPOINT": f"http://127.0.0.1:{local.free_port()}",
        "TOQUE_S3_MAX_ATTEMPTS": "1",
    }
    write_csv(tmp_path / "d" / "t.csv", "a\n1\n")
    argv = [sys.executable, "-m", "toque.cli.main", "data", "push", str(tmp_path / "d")]
    result = subprocess.run(
        [*argv, "--name", "ds"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 75, result.stderr
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "cannot reach" in result.stderr


@pytest.mark.usefixtures("bucket")
def test_pull_into_a_file_exits_3_and_leaves_it_alone(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_csv(tmp_path / "d" / "t.csv", "a\n1\n")
    _, ref, _ = run(capsys, "data", "push", str(tmp_path / "d"), "--name", "ds")
    (tmp_path / "file").write_text("mine")
    code, _, err = run(capsys, "data", "pull", ref.strip(), str(tmp_path / "file"))
    assert code == 3 and "not a directory" in err
    assert (tmp_path / "file").read_text() == "mine"
