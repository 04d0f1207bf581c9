"""Settings: environment loading, https policy, and errors that never echo values."""

from __future__ import annotations

import pytest

from smh_async import SMHConfigError, SMHSettings


def test_reads_smh_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """SMH_* variables fill the fields; secrets become SecretStr."""
    monkeypatch.setenv("SMH_LIBRARY_ID", "lib9")
    monkeypatch.setenv("SMH_ACCESS_TOKEN", "tok-envvalue-123")
    monkeypatch.setenv("SMH_CONCURRENCY", "7")
    s = SMHSettings()
    assert (s.library_id, s.concurrency) == ("lib9", 7)
    assert s.access_token is not None and s.access_token.get_secret_value() == "tok-envvalue-123"


def test_keyword_arguments_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Explicit values (CLI flags) override the environment."""
    monkeypatch.setenv("SMH_CONCURRENCY", "7")
    assert SMHSettings(concurrency=3).concurrency == 3


def test_dotenv_file_is_read(tmp_path: object) -> None:
    """A .env file in the working directory is read."""
    with open(".env", "w") as f:
        f.write("SMH_LIBRARY_ID=fromdotenv\n")
    assert SMHSettings().library_id == "fromdotenv"


def test_secrets_never_in_repr_or_str() -> None:
    """repr/str/model_dump of settings never show the token or secret."""
    s = SMHSettings(access_token="tok-Reprleak-77", library_secret="sec-Reprleak-88")
    for text in (repr(s), str(s), str(s.model_dump())):
        assert "Reprleak" not in text


@pytest.mark.parametrize(
    "url", ["http://smh.example.com", "http://10.0.0.1:8080", "ftp://127.0.0.1", "not a url"]
)
def test_insecure_or_bad_base_url_is_refused(url: str) -> None:
    """Plain http to a non-loopback host (or a non-http URL) is a config error."""
    with pytest.raises(SMHConfigError, match="base_url"):
        SMHSettings(base_url=url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://[::1]:9", "http://localhost"])
def test_loopback_http_is_allowed(url: str) -> None:
    """The emulator on loopback may use plain http."""
    assert SMHSettings(base_url=url).base_url.startswith("http://")


def test_explicit_opt_in_allows_http() -> None:
    """allow_insecure_http lets a non-loopback http URL through."""
    assert SMHSettings(base_url="http://smh.internal", allow_insecure_http=True)


def test_base_url_with_credentials_in_query_is_refused() -> None:
    """A base URL carrying a query (e.g. a token) is rejected without echoing it."""
    with pytest.raises(SMHConfigError) as info:
        SMHSettings(base_url="https://h.example/?access_token=tok-Qleak-1")
    assert "tok-Qleak-1" not in str(info.value)


def test_validation_error_names_field_but_not_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad value is reported by field and env name; no input value (or other secret) leaks."""
    monkeypatch.setenv("SMH_LIBRARY_SECRET", "sec-Neverprint-42")
    monkeypatch.setenv("SMH_CONCURRENCY", "lots-Neverprint")
    with pytest.raises(SMHConfigError) as info:
        SMHSettings()
    text = f"{info.value} {info.value!r}"
    assert "concurrency" in text and "SMH_CONCURRENCY" in text
    assert "Neverprint" not in text and info.value.fields == ("concurrency",)
    assert info.value.__suppress_context__  # pydantic's error (with values) is not chained


def test_library_id_must_be_a_path_segment() -> None:
    """A library id that would change the URL path is a config error."""
    with pytest.raises(SMHConfigError, match="library_id"):
        SMHSettings(library_id="../other")
