"""Settings: environment loading, https policy, and errors that never echo values."""

from __future__ import annotations

import subprocess
import typing
from pathlib import Path

import pytest
from pydantic import SecretStr

from smh_async import SMHClient, SMHConfigError, SMHSettings
from tests.nginx_gateway import make_tls_files, openssl_binary


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


FLOAT_FIELDS = sorted(
    name
    for name, field in SMHSettings.model_fields.items()
    if field.annotation is float or float in typing.get_args(field.annotation)
)


def test_float_fields_are_the_expected_ones() -> None:
    """The float fields found include the timeouts, and inf as a keyword is refused too."""
    assert {"timeout", "connect_timeout", "rate", "backoff_max"} <= set(FLOAT_FIELDS)
    with pytest.raises(SMHConfigError, match="finite"):
        SMHSettings(timeout=float("inf"))


@pytest.mark.parametrize("value", ["inf", "-inf", "Infinity", "nan"])
@pytest.mark.parametrize("name", FLOAT_FIELDS)
def test_infinite_or_nan_float_setting_is_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    """inf/-inf/nan in any float setting is a config error naming the field and variable."""
    monkeypatch.setenv(f"SMH_{name.upper()}", value)
    with pytest.raises(SMHConfigError) as info:
        SMHSettings()
    assert str(info.value) == (
        f"invalid settings: {name} (SMH_{name.upper()}): Input should be a finite number"
    )
    assert info.value.fields == (name,)


def test_non_utf8_dotenv_is_a_config_error_naming_the_file_not_its_content(
    tmp_path: Path,
) -> None:
    """A non-UTF-8 .env is an SMHConfigError naming file and line, none of its values."""
    (tmp_path / ".env").write_bytes(b"SMH_LIBRARY_SECRET=sec-Dotenvleak-5\nSMH_USER_ID=caf\xe9\n")
    with pytest.raises(SMHConfigError) as info:
        SMHSettings()
    text = str(info.value)
    assert text == (
        f"invalid settings: the env file {tmp_path.resolve() / '.env'} is not utf-8 text"
        " (line 2); re-save it as utf-8"
    )
    assert "Dotenvleak" not in text and "caf" not in text
    assert info.value.__suppress_context__


def _der_certificate(directory: Path) -> Path:
    """A real CA certificate in DER (binary) form, as some CAs hand them out."""
    openssl = openssl_binary()
    if openssl is None:
        pytest.skip("needs the openssl CLI")
    pem = make_tls_files(directory / "tls").ca
    der = directory / "ca.der"
    subprocess.run([openssl, "x509", "-in", pem, "-outform", "der", "-out", der], check=True)
    return der


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("text", "no PEM certificate in the file"),
        ("der", "a DER certificate must be converted"),
        ("key only", "no PEM certificate in the file"),
        ("bad base64", "not a valid PEM file of CA certificates"),
        ("directory", "is a directory"),
    ],
)
def test_unusable_ca_bundle_is_a_config_error(tmp_path: Path, kind: str, reason: str) -> None:
    """A ca_bundle ssl cannot load is an SMHConfigError naming ca_bundle and why, not the path."""
    path = tmp_path / "bundle-Pathleak"
    if kind == "text":
        path.write_text("myhostname\n")
    elif kind == "der":
        path = _der_certificate(tmp_path)
    elif kind == "key only":
        if openssl_binary() is None:
            pytest.skip("needs the openssl CLI")
        path = make_tls_files(tmp_path / "tls").key
    elif kind == "bad base64":
        path.write_text("-----BEGIN CERTIFICATE-----\nnot*base64!\n-----END CERTIFICATE-----\n")
    else:
        path.mkdir()
    with pytest.raises(SMHConfigError) as info:
        SMHSettings(ca_bundle=path)
    text = str(info.value)
    assert text.startswith("invalid settings: ca_bundle (SMH_CA_BUNDLE): ") and reason in text
    assert info.value.fields == ("ca_bundle",) and str(path) not in text


@pytest.mark.anyio
async def test_ca_bundle_broken_after_the_settings_is_a_config_error_at_open(
    tmp_path: Path,
) -> None:
    """A CA bundle broken after the settings were built fails the client open as a config error."""
    if openssl_binary() is None:
        pytest.skip("needs the openssl CLI")
    ca = make_tls_files(tmp_path / "tls").ca
    settings = SMHSettings(
        base_url="https://127.0.0.1:1", library_id="lib", access_token="t", ca_bundle=ca
    )
    ca.write_text("no longer a certificate\n")
    with pytest.raises(SMHConfigError, match=r"^invalid settings: ca_bundle \(SMH_CA_BUNDLE\)"):
        async with SMHClient(settings):
            pass


def test_bad_library_id_error_never_shows_the_value() -> None:
    """A library id that is not a path segment is named, never shown: it may be a secret
    pasted into the wrong variable (base64 has '+', '/' and '=')."""
    with pytest.raises(SMHConfigError) as info:
        SMHSettings(library_id="c2VjcmV0+Idleak/xyz==")
    text = f"{info.value} {info.value!r}"
    assert text.startswith("invalid settings: library_id (SMH_LIBRARY_ID): ")
    assert "Idleak" not in text and info.value.fields == ("library_id",)


def test_assigning_to_settings_never_shows_the_value() -> None:
    """Settings are frozen; the error for assigning a field does not echo the value given."""
    s = SMHSettings(access_token="tok-Old-1")
    with pytest.raises(ValueError, match="frozen") as info:
        s.access_token = "tok-Assignleak-9"  # type: ignore[misc, assignment]
    assert "Assignleak" not in f"{info.value} {info.value!r}"
    assert s.access_token is not None and s.access_token.get_secret_value() == "tok-Old-1"


def test_unknown_keyword_is_a_config_error() -> None:
    """A misspelt keyword (concurency=) is refused, naming it, instead of silently ignored."""
    with pytest.raises(SMHConfigError, match="unknown setting 'concurency'") as info:
        SMHSettings(concurency=5)
    assert info.value.fields == ("concurency",)
    assert SMHSettings(CONCURRENCY=5).concurrency == 5  # names are not case-sensitive


@pytest.mark.parametrize(
    ("update", "field"),
    [
        ({"base_url": "http://smh.example.com"}, "base_url"),
        ({"concurrency": 0}, "concurrency"),
        ({"timeout": -1}, "timeout"),
        ({"access_token": " "}, "access_token"),
        ({"concurency": 3}, "concurency"),
    ],
)
def test_copy_with_changes_is_validated(update: dict[str, object], field: str) -> None:
    """model_copy(update=...) validates the changed values as the constructor does."""
    s = SMHSettings(library_id="lib", library_secret="sec-Copy-1")
    with pytest.raises(SMHConfigError) as info:
        s.model_copy(update=update)
    assert info.value.fields == (field,)


def test_copy_with_changes_keeps_the_rest_and_not_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A validated copy keeps every other value as it was (the environment, changed since,
    is not read again) and turns a new token into a SecretStr."""
    s = SMHSettings(library_id="lib", library_secret="sec-Copy-1", concurrency=4)
    monkeypatch.setenv("SMH_CONCURRENCY", "9")
    Path(".env").write_text("SMH_TIMEOUT=oops\n")
    copy = s.model_copy(update={"access_token": "tok-Copy-2", "rate": "5"})
    assert (copy.library_id, copy.concurrency, copy.rate) == ("lib", 4, 5.0)
    assert copy.library_secret is not None and copy.library_secret.get_secret_value() == (
        "sec-Copy-1"
    )
    assert isinstance(copy.access_token, SecretStr)
    assert copy.access_token.get_secret_value() == "tok-Copy-2"


def test_copy_takes_a_change_in_any_case() -> None:
    """A change named in another case replaces the value, as it does when constructing
    (``Concurrency=9`` was accepted and then lost to the old ``concurrency``)."""
    s = SMHSettings(library_id="lib", library_secret="sec-Case-1", concurrency=4)
    assert s.model_copy(update={"Concurrency": 9}).concurrency == 9
    assert s.model_copy(update={"RATE": 2}).rate == 2.0


@pytest.mark.anyio
async def test_client_overrides_are_validated() -> None:
    """SMHClient(settings, **overrides) refuses what SMHSettings refuses (plain http to a
    remote host would send the token in clear), before any connection."""
    s = SMHSettings(base_url="http://127.0.0.1:1", library_id="lib", access_token="tok-Ov-1")
    with pytest.raises(SMHConfigError, match="base_url"):
        SMHClient(s, base_url="http://smh.example.com")
    with pytest.raises(SMHConfigError, match="concurrency"):
        SMHClient(s, concurrency=0)


@pytest.mark.parametrize("field", ["access_token", "library_secret"])
@pytest.mark.parametrize(
    "value", ["sec-Wsleak-3\n", " sec-Wsleak-3", "sec-Ws leak-3", "sec\tWsleak"]
)
def test_credential_with_white_space_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, field: str, value: str
) -> None:
    """A credential with white space (the newline a secret file often ends with) is refused,
    naming the field, not its value: it was sent as is and read as a wrong secret."""
    monkeypatch.setenv(f"SMH_{field.upper()}", value)
    with pytest.raises(SMHConfigError) as info:
        SMHSettings()
    assert str(info.value).startswith(f"invalid settings: {field} (SMH_{field.upper()}): ")
    assert "white space" in str(info.value) and "leak" not in str(info.value)


def test_a_subclass_keeps_its_own_fields() -> None:
    """A host's subclass with fields of its own takes them as keywords and in a copy."""

    class HostSettings(SMHSettings):
        tenant_batch: int = 10

    s = HostSettings(tenant_batch=5, library_id="lib")
    assert s.model_copy(update={"concurrency": 3}).tenant_batch == 5
    with pytest.raises(SMHConfigError, match="unknown setting 'tenant_bacth'"):
        HostSettings(tenant_bacth=5)


def test_a_dumped_settings_masked_credential_is_refused() -> None:
    """Settings rebuilt from their own JSON dump get the mask, not the secret: refused,
    rather than sent as a token or secret and rejected by SMH as a wrong one."""
    s = SMHSettings(library_id="lib", library_secret="sec-Mask-1")
    with pytest.raises(ValueError, match=r"library_secret \(SMH_LIBRARY_SECRET\): .*masked"):
        SMHSettings.model_validate_json(s.model_dump_json())
