"""Settings, validated once at the edge and then passed explicitly.

Values come from keyword arguments (highest priority), then ``SMH_*`` environment variables,
then a ``.env`` file. Secrets are :class:`pydantic.SecretStr` and print as ``**********``.
A validation failure raises :class:`~smh_async.SMHConfigError` naming the fields only:
pydantic's own message echoes input values, which may be another field's secret
(pydantic-settings #256), so it is never shown.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from yarl import URL

from smh_async._errors import SMHConfigError
from smh_async._protocol import check_path_segment

__all__ = ["DEFAULT_BASE_URL", "SMHSettings", "is_loopback_host"]

DEFAULT_BASE_URL = "https://api.tencentsmh.cn"


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
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise _config_error(exc) from None

    @field_validator("access_token", "library_secret")
    @classmethod
    def _secret_not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty SMH_LIBRARY_SECRET= (e.g. a missing Kubernetes secret) must not be sent.
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("must not be empty or blank (unset it instead)")
        return value

    @field_validator("library_id")
    @classmethod
    def _library_id_is_a_segment(cls, value: str | None) -> str | None:
        if value is not None:
            check_path_segment(value, what="library id")
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url_is_http(cls, value: str) -> str:
        url = URL(value.strip())
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("must be an http(s) URL with a host")
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
        if self.ca_bundle is not None and not self.ca_bundle.is_file():
            raise ValueError("ca_bundle: file not found")
        return self

    def __repr_args__(self) -> Any:
        # SecretStr already masks itself; this keeps the repr short and obviously safe.
        for name, value in super().__repr_args__():
            if name in ("access_token", "library_secret") and value is not None:
                value = "**********"
            yield name, value


def _config_error(exc: ValidationError) -> SMHConfigError:
    fields: list[str] = []
    lines: list[str] = []
    for err in exc.errors(include_input=False, include_url=False):
        name = ".".join(str(p) for p in err["loc"]) or _field_from_message(str(err["msg"]))
        fields.append(name)
        env = f"SMH_{name.upper()}" if name and name.isidentifier() else ""
        where = f"{name} ({env})" if env else name
        msg = str(err["msg"]).removeprefix("Value error, ")
        lines.append(f"{where}: {msg}" if where else msg)
    return SMHConfigError("invalid settings: " + "; ".join(lines), fields=tuple(fields))


def _field_from_message(message: str) -> str:
    head = message.removeprefix("Value error, ").split(":", 1)[0]
    return head if head.isidentifier() else ""
