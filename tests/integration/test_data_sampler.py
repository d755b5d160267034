"""The model server's sampler writes its Parquet batches with the data store's S3 client."""

from __future__ import annotations

import io
import uuid

import numpy as np
import pandas as pd
import pytest

from toque.local import services
from toque.serving import sampler


# pyarrow asks a tz-aware column for .values, which pandas 3.1 deprecates (not ours to fix).
@pytest.mark.filterwarnings("ignore:Series.values returning an ndarray")
def test_sampled_rows_land_in_the_bucket(
    minio: services.Minio, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in minio.env().items():
        monkeypatch.setenv(key, value)
    bucket = f"samples-{uuid.uuid4().hex[:8]}"
    minio.create_bucket(bucket)
    dropped: list[int] = []
    writer = sampler.Sampler(
        bucket, "m", "3", 1.0, ["a", "b"], dropped.append, interval_s=60, namespace="team-a"
    )
    writer.start()
    writer.offer(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([0, 1]), 2)
    writer.stop()
    assert (writer.files_written, dropped) == (1, [])
    s3 = minio.client()
    [item] = s3.list_objects_v2(Bucket=bucket, Prefix="serving-samples/team-a/m/3/")["Contents"]
    body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    frame = pd.read_parquet(io.BytesIO(body))
    assert frame[["a", "b", "prediction"]].values.tolist() == [[1.0, 2.0, 0], [3.0, 4.0, 1]]
