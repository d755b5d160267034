"""A failing prediction answers 500 with a request id, never the exception text; the log has it.

The ASGI app is driven in-process with a pyfunc-style model that raises.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import pandas as pd
import pytest

from toque.serving import app, model, signature

SECRET = "s3cret-token"


class Failing:
    """A model whose error text would leak an internal URL with credentials."""

    def predict(self, frame: pd.DataFrame) -> Any:
        raise RuntimeError(f"feature store at http://svc:{SECRET}@10.0.0.7/x refused")


def _app() -> app.App:
    schema = signature.from_names(["x"])
    served = app.App(
        app.Settings(model_name="m", version="1", digest="sha256:" + "0" * 64, sample_rate=0),
        model.Predictor(schema, None, Failing()),
        {},
    )
    return served


async def _call(
    served: app.App, path: str, body: bytes, headers: list[tuple[bytes, bytes]]
) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
    await served(scope, receive, send)
    start, payload = sent
    return start["status"], dict(start["headers"]), payload["body"]


def _post(body: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[int, dict[bytes, bytes], bytes]:
    async def go() -> tuple[int, dict[bytes, bytes], bytes]:
        served = _app()
        served.startup()
        try:
            return await _call(served, "/invocations", body, headers)
        finally:
            served.shutdown()

    return asyncio.run(go())


BODY = orjson.dumps({"dataframe_split": {"columns": ["x"], "data": [[1.0]]}})
JSON = (b"content-type", b"application/json")


def test_a_500_hides_the_error_and_names_the_request(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="toque.serve"):
        status, headers, body = _post(BODY, [JSON, (b"x-request-id", b"req-42.a_b")])
    assert status == 500
    assert orjson.loads(body) == {"error": "internal error", "request_id": "req-42.a_b"}
    assert headers[b"x-request-id"] == b"req-42.a_b"
    logged = caplog.text
    assert "req-42.a_b" in logged and "RuntimeError" in logged and "refused" in logged
    assert SECRET not in logged


def test_a_request_id_is_made_when_none_or_a_bad_one_is_sent() -> None:
    _, headers, body = _post(BODY, [JSON])
    made = orjson.loads(body)["request_id"]
    assert len(made) >= 16 and headers[b"x-request-id"] == made.encode()
    _, headers, body = _post(BODY, [JSON, (b"x-request-id", b"bad\r\nid" + b"x" * 300)])
    assert orjson.loads(body)["request_id"] != "bad\r\nid"
    assert b"\r" not in headers[b"x-request-id"]


def test_other_answers_echo_the_request_id_too() -> None:
    ok = orjson.dumps({"dataframe_split": {"columns": ["x"], "data": [["a"]]}})
    status, headers, _ = _post(ok, [JSON, (b"x-request-id", b"abc")])
    assert status == 400 and headers[b"x-request-id"] == b"abc"
