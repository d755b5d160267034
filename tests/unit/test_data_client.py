"""The store's S3 client: built in one place, no secret in a repr or a message, immutable keys."""

from __future__ import annotations

import dataclasses

import minio
import pytest

from toque.data import config, errors, layout, s3
from toque.serving import sampler

SECRET = "s3cr3t-Value-0123456789"


def settings(**changes: object) -> config.StoreConfig:
    base = config.StoreConfig(endpoint="http://127.0.0.1:9", access_key="AKID", secret_key=SECRET)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_repr_and_str_of_the_settings_never_show_the_secret() -> None:
    shown = settings(endpoint="http://user:hunter22@127.0.0.1:9000")
    for text in (repr(shown), str(shown), f"{shown}", f"{shown!r}", repr([shown])):
        assert SECRET not in text
        assert "hunter22" not in text
        assert "127.0.0.1:9000" in text and "AKID" in text
    assert shown.secret_key == SECRET  # still there for the client


def test_from_env_settings_do_not_show_the_secret_either() -> None:
    env = {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": SECRET}
    assert SECRET not in repr(config.StoreConfig.from_env(env))


def test_the_client_is_minio_and_the_sampler_uses_the_same_builder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[config.StoreConfig] = []
    real = s3.make_client

    def spy(settings: config.StoreConfig) -> minio.Minio:
        built.append(settings)
        return real(settings)

    monkeypatch.setattr(s3, "make_client", spy)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKID")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("TOQUE_S3_ENDPOINT", "http://127.0.0.1:9")
    assert isinstance(s3.Bucket(settings()).client, minio.Minio)
    assert isinstance(sampler.s3_client(), minio.Minio)
    assert len(built) == 2
    assert built[1].endpoint == "http://127.0.0.1:9"


@pytest.mark.parametrize(
    ("endpoint", "host", "secure"),
    [
        (None, "s3.amazonaws.com", True),
        ("http://127.0.0.1:9000", "127.0.0.1:9000", False),
        ("https://minio.example:443/", "minio.example:443", True),
        ("https://u:p@minio.example", "minio.example", True),
    ],
)
def test_endpoints(endpoint: str | None, host: str, secure: bool) -> None:
    assert s3._endpoint(settings(endpoint=endpoint)) == (host, secure)


def test_an_endpoint_with_a_path_is_refused_without_its_password() -> None:
    with pytest.raises(errors.InvalidInput, match="without a path") as caught:
        s3.make_client(settings(endpoint="http://me:hunter22@host:9000/minio"))
    assert "hunter22" not in str(caught.value)


def test_errors_name_the_endpoint_without_its_userinfo() -> None:
    # Port 9 (discard): nothing listens, so every request fails to connect.
    bucket = s3.Bucket(
        settings(endpoint="http://me:hunter22@127.0.0.1:9", connect_timeout=0.5, max_attempts=1)
    )
    assert "hunter22" not in bucket.where and "127.0.0.1:9" in bucket.where
    for call in (bucket.ensure, lambda: bucket.get("x"), lambda: bucket.head("x")):
        with pytest.raises(errors.StoreUnavailable, match="cannot reach") as caught:
            call()
        assert "hunter22" not in str(caught.value) and SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("key", "movable"),
    [
        (layout.tag_key("ds", "latest"), True),
        (layout.blob_key("0" * 64), False),
        (layout.version_key("ds", "sha256:" + "0" * 64), False),
        (layout.history_key("ds", "v", "20240101T000000.000000Z", "sha256:" + "0" * 64), False),
        ("datasets/ds/tags/x/y.json", False),
    ],
)
def test_only_tags_may_be_overwritten(key: str, movable: bool) -> None:
    assert layout.is_movable(key) is movable
    if not movable:
        with pytest.raises(errors.InvalidInput, match="immutable"):
            s3.Bucket(settings()).put(key, b"{}")


def test_protection_says_what_is_missing() -> None:
    assert "NOT protected" in s3.Protection("Off", False, None).describe()
    assert s3.Protection("Enabled", True, "GOVERNANCE 7 DAYS").protected
    assert "GOVERNANCE 7 DAYS" in s3.Protection("Enabled", True, "GOVERNANCE 7 DAYS").describe()
    assert "delete versions" in s3.Protection("Enabled", False, None).describe()
