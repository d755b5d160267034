"""``toque drift``: exit codes, reports and one-line errors, on local files."""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
import pathlib

import numpy as np
import pandas as pd
import pytest

from toque.cli import main as cli
from toque.core import bins
from toque.drift import sources, types


def _rows(seed: int, n: int = 5000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "y": rng.exponential(size=n),
            "color": rng.choice(["red", "green", "blue"], size=n),
        }
    )


def _parquet(frame: pd.DataFrame, path: pathlib.Path) -> str:
    frame.to_parquet(path)
    return str(path)


@pytest.fixture
def files(tmp_path: pathlib.Path) -> dict[str, str]:
    shifted = _rows(2)
    shifted["x"] += 1.0
    shifted["y"] *= 2.0
    return {
        "reference": _parquet(_rows(1), tmp_path / "reference.parquet"),
        "current": _parquet(_rows(2), tmp_path / "current.parquet"),
        "shifted": _parquet(shifted, tmp_path / "shifted.parquet"),
        "few": _parquet(_rows(2, n=50), tmp_path / "few.parquet"),
    }


def _check(reference: str, *rest: str) -> int:
    return cli.main(["drift", "check", "--reference", reference, "--current", *rest])


def test_healthy_data_exits_0_with_a_markdown_table(
    files: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _check(files["reference"], files["current"]) == 0
    out = capsys.readouterr().out
    assert "## Drift report: Healthy" in out
    assert "| feature | type | method | score | threshold | threshold source | verdict |" in out
    assert "| x | numeric | wasserstein |" in out and "| color | categorical | jsd |" in out


def test_drifted_data_exits_1_and_marks_the_drifted_rows(
    files: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _check(files["reference"], files["shifted"]) == 1
    out = capsys.readouterr().out
    assert "## Drift report: Drifted" in out
    assert out.count("**Drift**") == 2 and "| color | categorical | jsd |" in out


def test_too_few_rows_exit_3(files: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert _check(files["reference"], files["few"]) == 3
    assert "InsufficientData" in capsys.readouterr().out


def test_a_missing_file_exits_2_with_one_line(
    files: dict[str, str], tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _check(files["reference"], str(tmp_path / "nope.parquet")) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "nope.parquet" in err


def test_a_current_frame_without_profile_columns_exits_2_naming_them(
    files: dict[str, str], tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    partial = _parquet(_rows(2).drop(columns=["y", "color"]), tmp_path / "partial.parquet")
    assert _check(files["reference"], partial) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "y, color" in err


def test_a_bins_document_without_counts_exits_2_saying_to_retrain(
    files: dict[str, str], tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = tmp_path / "feature-bins.json"
    old.write_text(json.dumps(bins.compute_bins(_rows(1))))
    assert _check(str(old), files["current"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "retrain" in err


def test_an_unreadable_profile_exits_2(
    files: dict[str, str], tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "profile.json"
    broken.write_text("{not json")
    assert _check(str(broken), files["current"]) == 2
    assert "not JSON" in capsys.readouterr().err


def test_a_written_profile_is_a_reference_for_check(
    files: dict[str, str], tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "profile.json"
    assert cli.main(["drift", "profile", "--data", files["reference"], "--out", str(out)]) == 0
    assert list(bins.parse(out.read_text())) == ["x", "y", "color"]
    assert _check(str(out), files["shifted"]) == 1
    assert "**Drift**" in capsys.readouterr().out


def test_profile_leaves_the_label_out_and_profiles_it_as_the_output(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = _rows(1).assign(target=np.random.default_rng(0).integers(0, 2, 5000))
    data = _parquet(frame, tmp_path / "labelled.parquet")
    assert cli.main(["drift", "profile", "--data", data, "--label", "target"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert "target" not in document["features"]
    assert document["prediction"]["kind"] == "numeric"


def test_json_format_rules_and_termination_log(
    files: dict[str, str], tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = json.dumps(
        {"features": [{"name": "x", "method": "psi", "threshold": 5.0}], "driftShare": 0.5}
    )
    log = tmp_path / "termination-log"
    code = _check(
        files["reference"],
        files["shifted"],
        "--rules",
        rules,
        "--format",
        "json",
        "--termination-log",
        str(log),
    )
    assert code == 0  # only x is monitored, and its fixed threshold is far away
    body = json.loads(capsys.readouterr().out)
    (only,) = body["features"]
    assert (only["name"], only["threshold_source"], only["verdict"]) == ("x", "fixed", "NoDrift")
    assert json.loads(log.read_text())["verdict"] == "Healthy"


def test_bad_rules_exit_2(files: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert _check(files["reference"], files["current"], "--rules", '{"driftShare": 3}') == 2
    assert "driftShare" in capsys.readouterr().err


@dataclasses.dataclass
class _Listed:
    key: str
    modified: datetime.datetime


class _FakeBucket:
    """The two calls ``sources.samples`` makes of a ``toque.data.s3.Bucket``."""

    def __init__(self, objects: dict[str, tuple[datetime.datetime, bytes]]) -> None:
        self.objects = objects

    def keys(self, prefix: str) -> list[_Listed]:
        return [
            _Listed(k, at) for k, (at, _) in sorted(self.objects.items()) if k.startswith(prefix)
        ]

    def get(self, key: str) -> bytes:
        return self.objects[key][1]


def _sample_file(value: float) -> bytes:
    sink = io.BytesIO()
    pd.DataFrame({"x": [value], "prediction": [[0.2, 0.8]]}).to_parquet(sink)
    return sink.getvalue()


def test_samples_are_one_namespaces_version_inference_files_modified_in_the_window() -> None:
    now = datetime.datetime(2024, 5, 2, 0, 30, tzinfo=datetime.UTC)
    old = now - datetime.timedelta(hours=3)
    recent = now - datetime.timedelta(minutes=40)  # the day before: 2024-05-01
    bucket = _FakeBucket(
        {
            "serving-samples/ns/m/1/2024-05-01/a.parquet": (old, _sample_file(1.0)),
            "serving-samples/ns/m/1/2024-05-01/b.parquet": (recent, _sample_file(2.0)),
            "serving-samples/ns/m/1/2024-05-02/c.parquet": (now, _sample_file(3.0)),
            "serving-samples/ns/m/2/2024-05-02/d.parquet": (now, _sample_file(4.0)),
            "serving-samples/ns/m/1/feedback/2024-05-02/e.parquet": (now, _sample_file(5.0)),
            # Another namespace serving a model of the same name, same version.
            "serving-samples/other/m/1/2024-05-02/f.parquet": (now, _sample_file(6.0)),
        }
    )
    frames = sources.samples("ns/m/1", datetime.timedelta(hours=1), now=now, bucket=bucket)
    assert sorted(float(f["x"].iloc[0]) for f in frames) == [2.0, 3.0]
    month = sources.samples("ns/m/1", datetime.timedelta(days=40), now=now, bucket=bucket)
    assert sorted(float(f["x"].iloc[0]) for f in month) == [1.0, 2.0, 3.0]
    predictions, proba = sources.outputs(pd.concat(frames), ["no", "yes"])
    assert list(predictions) == ["yes", "yes"] and proba.shape == (2, 2)


@pytest.mark.parametrize("target", ["m/1", "ns/m", "ns//1", "/m/1/", "a/ns/m/1", ""])
def test_samples_reference_without_namespace_model_and_version_is_refused(target: str) -> None:
    with pytest.raises(types.InputError, match="NAMESPACE/MODEL/VERSION"):
        sources.samples(target, datetime.timedelta(hours=1), bucket=_FakeBucket({}))


@pytest.mark.parametrize("text", ["1", "h", "-1h", "0m"])
def test_invalid_windows_are_refused(text: str) -> None:
    with pytest.raises(types.InputError):
        sources.parse_window(text)


def test_exit_zero_reports_drift_but_exits_0_and_bad_input_still_exits_2(
    files: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _check(files["reference"], files["shifted"]) == 1
    capsys.readouterr()
    assert _check(files["reference"], files["shifted"], "--exit-zero") == 0
    assert "**Drift**" in capsys.readouterr().out
    assert _check(files["reference"], "missing.parquet", "--exit-zero") == 2


def test_rules_take_the_specs_dataset_rule_shape_and_refuse_it_twice() -> None:
    from toque.drift import types as dtypes

    nested = dtypes.rules_from_dict({"datasetRule": {"driftShare": 0.3}, "minSamples": 10})
    assert (nested.drift_share, nested.min_samples) == (0.3, 10)
    with pytest.raises(dtypes.InputError, match="once"):
        dtypes.rules_from_dict({"datasetRule": {"driftShare": 0.3}, "driftShare": 0.3})
    with pytest.raises(dtypes.InputError, match="datasetRule"):
        dtypes.rules_from_dict({"datasetRule": {"share": 0.3}})
