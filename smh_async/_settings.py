"""Settings, validated once at the edge and then passed explicitly.

Values come from keyword arguments (highest priority), then ``SMH_*`` environment variables,
then a ``.env`` file. Secrets are :class:`pydantic.SecretStr` and print as ``**********``.
A validation failure raises :class:`~smh_async.SMHConfigError` naming the fields only:
pydantic's own message echoes input values, which may be another field's secret
(pydantic-settings #256), so it is never shown. A ``.env`` file that cannot be read (not
UTF-8, unreadable) is a config error too, naming the file but never showing its content.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import ssl
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from yarl import URL

from smh_async._errors import InvalidSpaceIdError, SMHConfigError
from smh_async._protocol import MAX_SEGMENT, check_path_segment

__all__ = ["DEFAULT_BASE_URL", "SMHSettings", "ca_bundle_context", "is_loopback_host"]

DEFAULT_BASE_URL = "https://api.tencentsmh.cn"

_Settings = TypeVar("_Settings", bound="SMHSettings")


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class SMHSettings(BaseSettings):
    """Everything smh-async needs to talk to SMH. Every field reads ``SMH_<FIELD>`` too."""

    model_config = SettingsConfigDict(
        env_prefix="SMH_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
        # inf or nan in any float field (SMH_TIMEOUT=inf) is refused here: it passes gt=0
        # and would crash the first request (aiohttp cannot round an infinite timeout).
        allow_inf_nan=False,
    )

    base_url: str = Field(DEFAULT_BASE_URL, description="SMH API root; https unless loopback")
    library_id: str | None = Field(None, description="media library id (LibraryId)")
    access_token: SecretStr | None = Field(None, description="a ready access token")
    library_secret: SecretStr | None = Field(
        None, description="library secret: tokens are minted, renewed and re-minted from it"
    )
    user_id: str | None = Field(None, description="user_id sent with each request (optional)")
    token_grant: str = Field("admin", description="grant requested when minting tokens")
    token_period: int = Field(86400, ge=300, le=315360000, description="token lifetime, s")
    allow_insecure_http: bool = Field(False, description="permit http:// to non-loopback hosts")
    ca_bundle: Path | None = Field(None, description="PEM file of CAs to trust for https")
    verify_tls: bool = Field(True, description="verify server certificates (keep on)")
    concurrency: int = Field(32, ge=1, le=100_000, description="requests in flight at most")
    rate: float | None = Field(None, gt=0, description="requests/s cap for this process")
    rate_burst: int = Field(1, ge=1, description="requests allowed back-to-back by the cap")
    max_attempts: int = Field(5, ge=1, le=100, description="attempts per request, retries incl.")
    max_retry_time: float = Field(120.0, gt=0, description="retry budget per request, s")
    timeout: float = Field(30.0, gt=0, description="per-attempt timeout, s (pool wait excluded)")
    connect_timeout: float = Field(10.0, gt=0, description="TCP+TLS connect timeout, s")
    backoff_initial: float = Field(0.2, ge=0, description="first retry backoff ceiling, s")
    backoff_max: float = Field(20.0, ge=0, description="largest backoff between retries, s")
    retry_after_max: float = Field(60.0, ge=0, description="longest Retry-After honoured, s")
    force_close: bool = Field(False, description="one TCP connection per request")
    dns_ttl: int = Field(10, ge=0, description="DNS cache TTL, s")
    proxy_from_env: bool = Field(
        True, description="use HTTPS_PROXY/HTTP_PROXY/NO_PROXY (loopback is never proxied)"
    )

    def __init__(self, **values: Any) -> None:
        # extra="ignore" is for the .env file, which holds the CLI's run options and other
        # programs' variables; a keyword is ours, so a misspelt one must not vanish.
        fields = type(self).model_fields  # a host's subclass may add its own
        unknown = [k for k in values if not k.startswith("_") and k.lower() not in fields]
        if unknown:
            raise SMHConfigError(
                "invalid settings: " + "; ".join(f"unknown setting {k!r}" for k in unknown),
                fields=tuple(unknown),
            )
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise _config_error(exc) from None
        except (UnicodeDecodeError, OSError) as exc:
            # Raised while python-dotenv reads the .env file (validators only raise
            # ValueError, which pydantic wraps): name the file, never show its content.
            raise _env_file_error(exc, values) from None

    @field_validator("access_token", "library_secret")
    @classmethod
    def _secret_is_plausible(cls, value: SecretStr | None) -> SecretStr | None:
        text = value.get_secret_value() if value is not None else None
        if text is None:
            return value
        # An empty SMH_LIBRARY_SECRET= (e.g. a missing Kubernetes secret) must not be sent.
        if not text.strip():
            raise ValueError("must not be empty or blank (unset it instead)")
        if any(ch.isspace() or not ch.isprintable() for ch in text):
            # Sent as is, a secret file's final newline read as "wrong library id or secret".
            raise ValueError(
                "must not contain white space or control characters (a newline at the end "
                "of the file it came from?)"
            )
        if set(text) == {"*"}:  # what model_dump and repr show: settings rebuilt from a dump
            raise ValueError("is a masked value ('**********'), not the credential itself")
        return value

    @field_validator("library_id")
    @classmethod
    def _library_id_is_a_segment(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                check_path_segment(value, what="library id")
            except InvalidSpaceIdError:
                if not value:
                    raise ValueError("library id is empty") from None
                # Its message shows the value: maybe a secret set in the wrong variable.
                raise ValueError(
                    f"must be 1 to {MAX_SEGMENT} letters, digits or '-._~', not '.' or '..' (one "
                    "URL path segment); the value is not shown"
                ) from None
        return value

    @field_validator("ca_bundle", mode="before")
    @classmethod
    def _ca_bundle_not_blank(cls, value: Any) -> Any:
        # An empty SMH_CA_BUNDLE= would be Path("") == "." and say "is a directory".
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty or blank (unset it instead)")
        return value

    @field_validator("ca_bundle")
    @classmethod
    def _ca_bundle_is_usable(cls, value: Path | None) -> Path | None:
        # A file ssl cannot load (not PEM, DER, a directory) would otherwise end the first
        # request in an ssl.SSLError traceback instead of a config error before anything.
        if value is not None:
            _load_ca_bundle(value)
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url_is_http(cls, value: str) -> str:
        value = value.strip()
        if any(ch.isspace() or not ch.isprintable() for ch in value):
            # yarl keeps "https://host :443"'s space in the host (every request then fails
            # to resolve it) and silently drops a tab.
            raise ValueError("must not contain spaces or control characters")
        try:
            url = URL(value)
            port = url.explicit_port
        except ValueError:  # yarl: a port that is not a number from 0 to 65535
            raise ValueError("must be an http(s) URL with a valid port") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("must be an http(s) URL with a host")
        if port == 0:
            raise ValueError("must not have port 0")
        if url.query_string or url.fragment or url.user or url.password:
            raise ValueError("must not carry credentials, a query or a fragment")
        return str(url).rstrip("/")

    @model_validator(mode="after")
    def _https_unless_loopback(self) -> SMHSettings:
        url = URL(self.base_url)
        if url.scheme == "http" and not (is_loopback_host(url.host) or self.allow_insecure_http):
            raise ValueError(
                "base_url: plain http is only allowed for loopback hosts; SMH requires https "
                "(set allow_insecure_http to override)"
            )
        return self

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            super().__setattr__(name, value)
        except ValidationError as exc:  # frozen: pydantic's error shows the value (a secret?)
            errors: Any = [
                {"type": e["type"], "loc": e["loc"], "input": None} for e in exc.errors()
            ]
            raise ValidationError.from_exception_data(exc.title, errors, hide_input=True) from None

    def model_copy(
        self: _Settings, *, update: Mapping[str, Any] | None = None, deep: bool = False
    ) -> _Settings:
        """A copy; the values in ``update`` are validated as the constructor validates them
        (pydantic's own copy does not validate, so ``http://`` or ``concurrency=0`` got in).
        The environment and ``.env`` are not read again: every other value stays as it is."""
        if not update:
            return super().model_copy(deep=deep)
        values = {name: getattr(self, name) for name in type(self).model_fields}
        # Names are not case-sensitive: "Concurrency" replaces concurrency, not beside it.
        values.update({k if k.startswith("_") else k.lower(): v for k, v in update.items()})
        return type(self)(_env_file=None, **values)

    def __repr_args__(self) -> Any:
        # SecretStr already masks itself; this keeps the repr short and obviously safe.
        for name, value in super().__repr_args__():
            if name in ("access_token", "library_secret") and value is not None:
                value = "**********"
            yield name, value


def ca_bundle_context(path: Path) -> ssl.SSLContext:
    """A certificate-verifying TLS client context trusting the CAs in ``path`` (PEM).

    Raises :class:`~smh_async.SMHConfigError` naming ``ca_bundle`` (not its value) when
    the file cannot be used, e.g. replaced since the settings were checked.
    """
    try:
        return _load_ca_bundle(path)
    except ValueError as exc:
        raise SMHConfigError(
            f"invalid settings: {_where('ca_bundle')}: {exc}", fields=("ca_bundle",)
        ) from None


def _load_ca_bundle(path: Path) -> ssl.SSLContext:
    """The TLS context for ``ca_bundle``, or ValueError saying why the file is unusable.

    Neither the path (it could be a mis-set secret) nor any of the content is in the message.
    """
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise ValueError("file not found") from None
        raise ValueError(f"cannot read the file: {exc.strerror or type(exc).__name__}") from None
    if stat.S_ISDIR(mode):
        raise ValueError("is a directory, not a PEM file of CA certificates")
    if not stat.S_ISREG(mode):  # a FIFO or a terminal would block the read
        raise ValueError("is not a regular file")
    try:
        context = ssl.create_default_context(cafile=str(path))
    except ssl.SSLError as exc:
        if exc.reason == "NO_CERTIFICATE_OR_CRL_FOUND":
            raise ValueError(
                "no PEM certificate in the file (a DER certificate must be converted: "
                "openssl x509 -inform der -in CERT -out CERT.pem)"
            ) from None
        raise ValueError(
            f"not a valid PEM file of CA certificates (OpenSSL: {exc.library or 'SSL'}"
            f" {exc.reason or 'error'})"
        ) from None
    except OSError as exc:
        raise ValueError(f"cannot read the file: {exc.strerror or type(exc).__name__}") from None
    if not context.cert_store_stats()["x509"]:  # e.g. a PEM file of revocation lists only
        raise ValueError("no certificate in the file (only revocation lists)")
    return context


def _where(name: str) -> str:
    return f"{name} (SMH_{name.upper()})"


def _config_error(exc: ValidationError) -> SMHConfigError:
    fields: list[str] = []
    lines: list[str] = []
    for err in exc.errors(include_input=False, include_url=False):
        name = ".".join(str(p) for p in err["loc"]) or _field_from_message(str(err["msg"]))
        fields.append(name)
        where = _where(name) if name and name.isidentifier() else name
        # A model validator's message starts with the field name: do not say it twice.
        msg = str(err["msg"]).removeprefix("Value error, ").removeprefix(f"{name}: ")
        lines.append(f"{where}: {msg}" if where else msg)
    return SMHConfigError("invalid settings: " + "; ".join(lines), fields=tuple(fields))


def _env_file_error(exc: UnicodeDecodeError | OSError, values: dict[str, Any]) -> SMHConfigError:
    """The config error for an env file that cannot be read, naming it but not its content."""
    encoding = values.get("_env_file_encoding") or SMHSettings.model_config["env_file_encoding"]
    if isinstance(exc, OSError):
        name = _names([Path(exc.filename)] if exc.filename else _env_files(values))
        why = exc.strerror or type(exc).__name__
        return SMHConfigError(f"invalid settings: cannot read the env file {name}: {why}")
    for path in _env_files(values):
        try:
            data = path.read_bytes() if path.is_file() else b""
            data.decode(str(encoding))
        except UnicodeDecodeError as bad:
            line = data.count(b"\n", 0, bad.start) + 1
            return SMHConfigError(
                f"invalid settings: the env file {_names([path])} is not {encoding} text"
                f" (line {line}); re-save it as {encoding}"
            )
        except OSError:
            continue
    names = _names(_env_files(values))
    return SMHConfigError(f"invalid settings: the env file {names} is not {encoding} text")


def _names(paths: list[Path]) -> str:
    return ", ".join(os.path.abspath(p) for p in paths)  # no file-system access: cannot fail


def _env_files(values: dict[str, Any]) -> list[Path]:
    """The env files settings are read from (``_env_file=`` or ``.env``)."""
    files = values.get("_env_file")
    if files is None or files == Path(""):  # not given (pydantic-settings' own sentinel)
        files = SMHSettings.model_config["env_file"]
    if isinstance(files, (str, os.PathLike)):
        return [Path(files)]
    return [Path(f) for f in files] if isinstance(files, Sequence) else []


def _field_from_message(message: str) -> str:
    head = message.removeprefix("Value error, ").split(":", 1)[0]
    return head if head.isidentifier() else ""
