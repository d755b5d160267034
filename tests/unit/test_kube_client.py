"""Which API errors the handlers retry."""

from __future__ import annotations


def test_an_unreachable_api_server_is_transient() -> None:
    import urllib3

    from toque.clients import kube

    refused = urllib3.exceptions.MaxRetryError(None, "/api", reason=None)  # type: ignore[arg-type]
    assert kube.is_transient(refused)
    assert kube.is_transient(ConnectionRefusedError())
    assert not kube.is_transient(ValueError("bad"))
    assert not kube.is_transient(kube.ApiException(status=422, reason="Invalid"))
