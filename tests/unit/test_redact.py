from toque.core.redact import redact, redact_url


def test_redact_url_removes_user_and_password() -> None:
    assert redact_url("http://alice:s3cret@mlflow:5000/api") == "http://***@mlflow:5000/api"


def test_redact_url_keeps_urls_without_credentials() -> None:
    assert redact_url("http://mlflow:5000/api?x=a@b") == "http://mlflow:5000/api?x=a@b"


def test_redact_finds_urls_inside_exception_text() -> None:
    msg = "HTTPConnectionPool(host='h'): Max retries exceeded with url: 'https://u:pw@h/x' (err)"
    assert "pw" not in redact(msg)
    assert "https://***@h/x" in redact(msg)


def test_redact_removes_named_secret_values() -> None:
    assert redact("key=abcd1234 failed", "abcd1234") == "key=*** failed"
