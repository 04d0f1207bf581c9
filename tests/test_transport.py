"""Transport set-up an operator gets wrong (proxy URLs, CAs, proxy passwords, insecure
switches) fails fast, in one line, without a secret; proxy credentials echoed back never reach
a report or a log; failures no retry can cure are not retried and stop a bulk run."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import IO

import anyio
import pytest
import structlog

from smh_async import (
    PurgeOutcome,
    PurgeSummary,
    SMHAuthError,
    SMHClient,
    SMHConfigError,
    SMHSettings,
    SMHTransportError,
)
from smh_async._auth import token_unavailable
from smh_async._commands import _secrets
from smh_async._errors import SMHServerError
from smh_async._logging import Redactor
from smh_async._protocol import empty_recycle_bin
from smh_async._proxy import proxy_for
from smh_async.testing import FakeServer, FakeSMH
from tests.conftest import LIBRARY, SECRET, make_settings
from tests.nginx_gateway import (
    GatewayConfig,
    NginxGateway,
    make_tls_files,
    nginx_binary,
    openssl_binary,
)
from tests.test_proxy import REMOTE_HOST, ForwardingProxy, _free_port, clear_proxy_env

pytestmark = pytest.mark.anyio
__all__ = ["clear_proxy_env"]  # the fixture, used here by name

PASSWORD = "Kp4#2xQ!w-Zq9/Xk7?Lm"  # '#', '/', '?' unencoded: yarl misreads the URL
needs_tls = pytest.mark.skipif(
    nginx_binary() is None or openssl_binary() is None,
    reason="nginx or openssl not installed (CI installs nginx-light)",
)


def _cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMH_")}
    env.update(SMH_LIBRARY_ID=LIBRARY, **extra)
    return env


async def _cli(
    *args: str, env: dict[str, str], cwd: Path | None = None, stdout: IO[str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return await anyio.run_process(
        [sys.executable, "-m", "smh_async", *args],
        env=env,
        check=False,
        cwd=cwd,
        stdout=subprocess.PIPE if stdout is None else stdout,
    )


# ---------------------------------------------------------------- T1: bad proxy URLs


@pytest.mark.parametrize(
    "value",
    [
        f"http://svc-smh:{PASSWORD}@127.0.0.1:3128",
        "http://svc-smh:Kp4#2xQw@127.0.0.1:3128",
        "http://svc-smh:Zq9/Xk7Lm@127.0.0.1:3128",
        "http://svc-smh:12#Xk7Lm@127.0.0.1:3128",  # parses: host "svc-smh", port 12
        "http://127.0.0.1:99999",
        "http://127.0.0.1:0",
    ],
)
def test_an_unusable_proxy_url_is_a_config_error_naming_the_variable(
    clear_proxy_env: pytest.MonkeyPatch, value: str
) -> None:
    """A proxy URL yarl cannot read (an unencoded '/', '#' or '?' in the password, a port out
    of range) is an SMHConfigError naming HTTPS_PROXY, with no part of the password in its
    text and no chained yarl error (which quoted it), not a bare ValueError."""
    clear_proxy_env.setenv("HTTPS_PROXY", value)
    with pytest.raises(SMHConfigError) as info:
        proxy_for("https://smh.example.com")
    text = str(info.value)
    assert text.startswith("HTTPS_PROXY: ") and "percent-encode" in text.lower()
    for part in ("Kp4", "Zq9", "Xk7", "99999", "svc-smh"):
        assert part not in text
    exc = info.value
    assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)


def test_a_proxy_url_without_a_host_says_so(clear_proxy_env: pytest.MonkeyPatch) -> None:
    """HTTPS_PROXY=http:// names what is missing (a host), not "got no host" after a rule
    about schemes."""
    clear_proxy_env.setenv("HTTPS_PROXY", "http://")
    with pytest.raises(SMHConfigError, match=r"^HTTPS_PROXY: the proxy URL has no host"):
        proxy_for("https://smh.example.com")


@pytest.mark.parametrize("command", ["purge", "spaces"])
async def test_cli_with_a_password_breaking_the_proxy_url_exits_2_in_one_line(
    fake: FakeSMH, server: FakeServer, command: str
) -> None:
    """`purge` and `spaces` with such an HTTPS_PROXY: exit 2, one error line naming the
    variable, no traceback, no part of the password; nothing sent."""
    sid = fake.add_space(LIBRARY)
    env = _cli_env(
        HTTPS_PROXY=f"http://svc-smh:{PASSWORD}@127.0.0.1:3128",
        SMH_BASE_URL=f"https://{REMOTE_HOST}",
        SMH_LIBRARY_SECRET=SECRET,
    )
    proc = await _cli(command, *([sid] if command == "purge" else []), env=env)
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert err.count("\n") == 1 and err.startswith("smh-async: error: HTTPS_PROXY: ")
    assert "Traceback" not in err and "Kp4" not in err + proc.stdout.decode()
    assert fake.requests == []


# ---------------------------------------------------------------- T2: echoed proxy credentials


class EchoingProxy:
    """A plain-http proxy whose every answer is a 502 page quoting the request head (as some
    gateways' debug pages do): Proxy-Authorization included."""

    def __init__(self) -> None:
        self.port = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").strip()
                page = f"<html><title>502 {' | '.join(head.splitlines())}</title></html>"
                body = page.encode("latin-1")
                writer.write(
                    b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        writer.close()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[EchoingProxy]:
        """Serve on a free loopback port while the block runs."""
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        async with server:
            yield self
            server.close()


PROXY_USER, PROXY_PW = "puser", "s3cr3t-Pr0xy-PW"
BASIC = base64.b64encode(f"{PROXY_USER}:{PROXY_PW}".encode()).decode()


async def test_a_proxy_page_echoing_proxy_authorization_never_reaches_the_report(
    fake: FakeSMH, server: FakeServer, clear_proxy_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A plain-http proxy's 502 page quoting the request head: the report and the log carry
    the page's text with the Proxy-Authorization credential blanked, as the token is."""
    ids = fake.add_spaces(LIBRARY, count=3)
    token = fake.issue_token(LIBRARY)
    report = tmp_path / "r.jsonl"
    async with EchoingProxy().running() as proxy:
        env = _cli_env(
            HTTP_PROXY=f"http://{PROXY_USER}:{PROXY_PW}@127.0.0.1:{proxy.port}",
            SMH_ACCESS_TOKEN=token,
        )
        args = ["purge", *ids, "--allow-insecure-http", "--max-attempts", "1"]
        args += ["--base-url", f"http://{REMOTE_HOST}:{server.port}", "--report", str(report)]
        proc = await _cli(*args, "--log-format", "json", "--log-level", "debug", env=env)
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    assert [r["http_status"] for r in rows] == [502] * 3
    assert all("Proxy-Authorization: [REDACTED]" in r["error_message"] for r in rows)
    everything = report.read_text() + proc.stderr.decode() + proc.stdout.decode()
    assert "access_token=[REDACTED]" in everything
    for secret in (BASIC, PROXY_PW, token):
        assert secret not in everything


def test_the_cli_log_redactor_knows_the_proxy_credentials(
    clear_proxy_env: pytest.MonkeyPatch,
) -> None:
    """The CLI's log redactor is given the proxy's credentials (header, base64, password,
    as typed in the URL): a second line of defence for text that did not come through an
    error (e.g. a host's own event quoting a request)."""
    clear_proxy_env.setenv("HTTPS_PROXY", f"http://{PROXY_USER}:pw%2Fsecret9@127.0.0.1:3128")
    settings = SMHSettings(_env_file=None, library_id=LIBRARY, access_token="tok-abcdef")
    basic = base64.b64encode(f"{PROXY_USER}:pw/secret9".encode()).decode()
    redactor = Redactor(_secrets(settings))
    text = f"Proxy-Authorization: Basic {basic}; pw/secret9; http://u:pw%2Fsecret9@h; tok-abcdef"
    cleaned = redactor.text(text)
    for value in (basic, "pw/secret9", "pw%2Fsecret9", "tok-abcdef"):
        assert value not in cleaned


# ---------------------------------------------------------------- T3: no retry can cure them


class RefusingProxy:
    """A proxy that answers every CONNECT with ``status`` (407 by default) and counts them."""

    def __init__(self, status: bytes = b"407 Proxy Authentication Required") -> None:
        self.status = status
        self.connects = 0
        self.port = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            self.connects += 1
            writer.write(
                b"HTTP/1.1 " + self.status + b"\r\n"
                b'Proxy-Authenticate: Basic realm="x"\r\nContent-Length: 0\r\n\r\n'
            )
            await writer.drain()
        writer.close()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[RefusingProxy]:
        """Serve on a free loopback port while the block runs."""
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        async with server:
            yield self
            server.close()


async def test_a_proxy_407_is_not_retried_keeps_its_status_and_stops_the_run(
    fake: FakeSMH, server: FakeServer, clear_proxy_env: pytest.MonkeyPatch
) -> None:
    """CONNECT answered 407 with a static token: the space fails ProxyAuthRequired with
    http_status 407 after one attempt, and the run stops at once (aborted "auth"), so the
    proxy sees one CONNECT, not max_attempts per space."""
    ids = fake.add_spaces(LIBRARY, count=5)
    token = fake.issue_token(LIBRARY)
    outcomes: list[PurgeOutcome] = []
    async with RefusingProxy().running() as proxy:
        clear_proxy_env.setenv(
            "HTTPS_PROXY", f"http://{PROXY_USER}:wrong-pw@127.0.0.1:{proxy.port}"
        )
        settings = make_settings(
            server,
            base_url=f"https://{REMOTE_HOST}:{_free_port()}",
            library_secret=None,
            access_token=token,
            max_attempts=5,
        )
        async with SMHClient(settings) as smh:
            summary = await smh.purge_all(ids, concurrency=1, on_outcome=outcomes.append)
    failed = [o for o in outcomes if o.outcome == "failed"]
    assert [(o.error_code, o.http_status, o.attempts) for o in failed] == [
        ("ProxyAuthRequired", 407, 1)
    ]
    assert summary.aborted == "auth" and summary.accepted == 0
    assert proxy.connects == 1
    assert "wrong-pw" not in repr(outcomes)


async def _purge_through(
    proxy: RefusingProxy,
    fake: FakeSMH,
    server: FakeServer,
    env: pytest.MonkeyPatch,
    spaces: int,
    max_attempts: int,
) -> tuple[PurgeSummary, list[PurgeOutcome]]:
    """Purge ``spaces`` new spaces of a remote https host through ``proxy``, one at a time,
    with a static token: the summary and the outcomes."""
    ids = fake.add_spaces(LIBRARY, count=spaces)
    outcomes: list[PurgeOutcome] = []
    async with proxy.running():
        env.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
        settings = make_settings(
            server,
            base_url=f"https://{REMOTE_HOST}:{_free_port()}",
            library_secret=None,
            access_token=fake.issue_token(LIBRARY),
            max_attempts=max_attempts,
        )
        async with SMHClient(settings) as smh:
            summary = await smh.purge_all(ids, concurrency=1, on_outcome=outcomes.append)
    return summary, outcomes


@pytest.mark.parametrize("status", [b"403 Forbidden", b"405 Method Not Allowed"])
async def test_a_proxy_refusing_the_tunnel_by_policy_is_not_retried_and_stops_the_run(
    fake: FakeSMH, server: FakeServer, clear_proxy_env: pytest.MonkeyPatch, status: bytes
) -> None:
    """CONNECT answered 403 (a proxy ACL denying the SMH host) or 405: the space fails
    ProxyRefused with that http_status after one attempt and the run stops at once, so
    the proxy sees one CONNECT, not max_attempts for every space."""
    proxy = RefusingProxy(status)
    summary, outcomes = await _purge_through(proxy, fake, server, clear_proxy_env, 5, 5)
    failed = [o for o in outcomes if o.outcome == "failed"]
    code = int(status.split()[0])
    assert [(o.error_code, o.http_status, o.attempts) for o in failed] == [
        ("ProxyRefused", code, 1)
    ]
    assert "proxy" in (failed[0].error_message or "")
    assert summary.aborted == "auth" and summary.accepted == 0
    assert proxy.connects == 1


async def test_a_proxy_refusing_the_token_request_names_itself_and_stops_as_auth(
    fake: FakeSMH, server: FakeServer, clear_proxy_env: pytest.MonkeyPatch
) -> None:
    """Tokens minted from the library secret, CONNECT answered 403: the space's error is
    ProxyRefused and the run stops as for a credential ("auth"), not TokenUnavailable with
    "token_unavailable", which says nothing is wrong but the token endpoint, so resume later."""
    ids = fake.add_spaces(LIBRARY, count=3)
    outcomes: list[PurgeOutcome] = []
    async with RefusingProxy(b"403 Forbidden").running() as proxy:
        clear_proxy_env.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
        settings = make_settings(server, base_url=f"https://{REMOTE_HOST}:{_free_port()}")
        async with SMHClient(settings) as smh:
            summary = await smh.purge_all(ids, concurrency=1, on_outcome=outcomes.append)
    assert summary.aborted == "auth"
    assert summary.by_error_code.keys() == {"ProxyRefused"}


async def test_a_proxy_502_on_connect_stays_retryable(
    fake: FakeSMH, server: FakeServer, clear_proxy_env: pytest.MonkeyPatch
) -> None:
    """CONNECT answered 502 (the proxy could not reach the host, maybe for a moment): retried
    up to max_attempts like a connection error, and the run goes on to the next space."""
    proxy = RefusingProxy(b"502 Bad Gateway")
    summary, outcomes = await _purge_through(proxy, fake, server, clear_proxy_env, 2, 3)
    assert summary.aborted is None and summary.failed == 2
    assert sorted(o.attempts for o in outcomes) == [3, 3]
    assert proxy.connects == 6


async def test_a_plain_http_proxy_407_is_proxy_auth_required(
    fake: FakeSMH, server: FakeServer, clear_proxy_env: pytest.MonkeyPatch
) -> None:
    """A plain-http base URL's proxy answering 407 (a normal reply, not a CONNECT): an
    SMHAuthError with code ProxyAuthRequired and status 407, sent once."""
    sid = fake.add_space(LIBRARY)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            handle.count += 1  # type: ignore[attr-defined]
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        writer.close()

    handle.count = 0  # type: ignore[attr-defined]
    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with listener:
        port = listener.sockets[0].getsockname()[1]
        clear_proxy_env.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
        settings = make_settings(
            server,
            base_url=f"http://{REMOTE_HOST}:{server.port}",
            allow_insecure_http=True,
            library_secret=None,
            access_token=fake.issue_token(LIBRARY),
        )
        async with SMHClient(settings) as smh:
            with pytest.raises(SMHAuthError) as info:
                await smh.empty_recycle_bin(sid)
        listener.close()
    assert (info.value.status, info.value.code, info.value.attempts) == (
        407,
        "ProxyAuthRequired",
        1,
    )
    assert handle.count == 1  # type: ignore[attr-defined]


@pytest.mark.nginx
@needs_tls
@pytest.mark.parametrize("how", ["no_ca", "wrong_host"])
async def test_a_certificate_that_fails_verification_stops_a_static_token_run_with_exit_2(
    fake: FakeSMH, server: FakeServer, tmp_path: Path, clear_proxy_env: pytest.MonkeyPatch, how: str
) -> None:
    """Static token, gateway certificate not verifiable (no private CA; a host name the
    certificate does not name, through a CONNECT tunnel): one attempt per space started,
    error TLSVerifyFailed, the run stops at once and exits 2, as with a library secret."""
    ids = fake.add_spaces(LIBRARY, count=5)
    tls = make_tls_files(tmp_path / "tls")
    report = tmp_path / "r.jsonl"
    (tmp_path / "ng").mkdir()
    with NginxGateway(tmp_path / "ng", GatewayConfig(server.port, tls=tls)) as gateway:
        env = _cli_env(SMH_ACCESS_TOKEN=fake.issue_token(LIBRARY))
        args = ["purge", *ids, "--report", str(report), "--concurrency", "1"]
        async with ForwardingProxy(gateway.port).running() as proxy:
            if how == "no_ca":
                args += ["--base-url", gateway.base_url]
            else:
                env["HTTPS_PROXY"] = f"http://127.0.0.1:{proxy.port}"
                args += ["--base-url", f"https://wrong.test:{gateway.port}"]
                args += ["--ca-bundle", str(tls.ca)]
            proc = await _cli(*args, env=env)
        nothing = purge_lines(gateway)
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    failed = [r for r in rows if r["outcome"] == "failed"]
    assert proc.returncode == 2, proc.stderr.decode()[-2000:]
    assert [(r["error_code"], r["attempts"]) for r in failed] == [("TLSVerifyFailed", 1)]
    assert "failed verification" in failed[0]["error_message"]
    assert {r["outcome"] for r in rows} == {"failed", "skipped"} and len(rows) == 5
    assert nothing == []


def purge_lines(gateway: NginxGateway) -> list[str]:
    """Requests nginx passed on (none reach it when the handshake fails)."""
    return [path for _, path, _ in gateway.access_lines()]


async def test_a_reset_during_the_handshake_stays_retryable(
    fake: FakeSMH, server: FakeServer
) -> None:
    """A TLS server that drops the connection mid-handshake is a transient failure: retried
    up to max_attempts, not TLSVerifyFailed (a guard: only verification failures stop)."""
    sid = fake.add_space(LIBRARY)
    accepted = 0

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        with suppress(ConnectionError):
            await reader.read(10)  # the ClientHello has arrived: hang up on it
        writer.transport.abort()
        writer.close()

    listener = await asyncio.start_server(drop, "127.0.0.1", 0)
    async with listener:
        port = listener.sockets[0].getsockname()[1]
        settings = make_settings(
            server,
            base_url=f"https://127.0.0.1:{port}",
            library_secret=None,
            access_token=fake.issue_token(LIBRARY),
            max_attempts=3,
        )
        async with SMHClient(settings) as smh:
            with pytest.raises(SMHTransportError) as info:
                await smh.empty_recycle_bin(sid)
        listener.close()
    error = info.value
    assert error.code != "TLSVerifyFailed" and error.retryable
    assert accepted >= 3


# ---------------------------------------------------------------- T4: insecure switches


@pytest.mark.parametrize(
    ("overrides", "fields"),
    [
        ({"verify_tls": False, "base_url": "https://smh.test"}, {"tls_verification"}),
        (
            {"verify_tls": False, "base_url": "https://smh.test", "ca_bundle": "CA"},
            {"tls_verification", "ca_bundle"},
        ),
        ({"verify_tls": False}, set()),  # plain http to loopback: no TLS to verify
        ({"base_url": "http://smh.test", "allow_insecure_http": True}, {"plain_http"}),
        ({}, set()),
    ],
)
async def test_turning_protection_off_is_logged_as_a_warning_when_the_client_opens(
    fake: FakeSMH,
    server: FakeServer,
    tmp_path: Path,
    overrides: dict[str, object],
    fields: set[str],
) -> None:
    """verify_tls=false (and a ca_bundle it makes useless) or plain http to a remote host
    is one WARNING event, smh.connection.insecure, naming what is off; nothing by default."""
    if "ca_bundle" in overrides:
        if openssl_binary() is None:
            pytest.skip("openssl not installed")
        overrides = {**overrides, "ca_bundle": make_tls_files(tmp_path / "tls").ca}
    with structlog.testing.capture_logs() as logs:
        async with SMHClient(make_settings(server, proxy_from_env=False, **overrides)):
            pass
    events = [e for e in logs if e["event"] == "smh.connection.insecure"]
    if not fields:
        assert events == []
        return
    assert len(events) == 1 and events[0]["log_level"] == "warning"
    assert set(events[0]) - {"event", "log_level"} == fields


async def test_purge_plan_warns_when_tls_verification_is_off(
    fake: FakeSMH, server: FakeServer
) -> None:
    """SMH_VERIFY_TLS=false with an https base URL: `purge` logs one warning saying
    verification is off (smh.connection.insecure; purge.plan said it again), before it
    sends anything (here to a port nobody listens on)."""
    env = _cli_env(SMH_VERIFY_TLS="false", SMH_ACCESS_TOKEN="tok-Aq9Wm3Xe")
    args = ["purge", "s1", "--base-url", f"https://127.0.0.1:{_free_port()}"]
    proc = await _cli(*args, "--log-format", "json", "--max-attempts", "1", env=env)
    events = [
        json.loads(line) for line in proc.stderr.decode().splitlines() if line.startswith("{")
    ]
    warned = [e for e in events if "tls_verification" in e]
    assert [e["event"] for e in warned] == ["smh.connection.insecure"]
    assert warned[0]["level"] == "warning" and warned[0]["tls_verification"].startswith("off")


# ---------------------------------------------------------------- T5: the demo


async def test_the_demo_ignores_smh_settings_from_the_environment_and_env_file(
    tmp_path: Path,
) -> None:
    """A leftover SMH_ACCESS_TOKEN in .env, SMH_TIMEOUT=0.001 and SMH_RATE=1 do not touch the
    demo: it runs on its own settings and ends "demo OK", exit 0."""
    (tmp_path / ".env").write_text("SMH_ACCESS_TOKEN=acctk-left-over\nSMH_RATE=1\n")
    env = _cli_env(SMH_TIMEOUT="0.001", SMH_BASE_URL="https://example.invalid")
    with anyio.fail_after(60):
        proc = await _cli("demo", "--spaces", "20", env=env, cwd=tmp_path)
    out = proc.stdout.decode() + proc.stderr.decode()
    assert proc.returncode == 0, out[-2000:]
    assert "demo OK" in out and "Traceback" not in out


async def test_a_demo_failure_is_one_line_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An SMHError inside the demo ends it with exit 1 and one error line on stderr."""
    from smh_async import _demo

    async def failing(spaces: int, concurrency: int) -> int:
        raise SMHServerError("boom", status=500, route="GET /x")

    monkeypatch.setattr(_demo, "_tour", failing)
    assert await _demo.run_demo(5, 2) == 1
    err = capsys.readouterr().err
    assert err == "smh-async: error: demo failed: 500: boom (route=GET /x)\n"


# ---------------------------------------------------------------- T6: spaces to a full disk


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
async def test_spaces_to_a_full_disk_is_one_error_line_and_exit_1(
    fake: FakeSMH, server: FakeServer
) -> None:
    """`smh-async spaces > /dev/full`: exit 1, one error line saying stdout could not be
    written, no traceback."""
    fake.add_spaces(LIBRARY, count=30)
    env = _cli_env(SMH_LIBRARY_SECRET=SECRET, SMH_BASE_URL=server.base_url)
    with open("/dev/full", "w") as full:
        proc = await _cli("spaces", "--log-level", "warning", env=env, stdout=full)
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert err.startswith("smh-async: error: cannot write the space list to stdout: ")
    assert err.count("\n") == 1 and "Traceback" not in err


# ---------------------------------------------------------------- T7: small ones


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"ca_bundle": ""}, "ca_bundle (SMH_CA_BUNDLE): must not be empty"),
        ({"base_url": "https://127.0.0.1 :19410"}, "must not contain spaces"),
        ({"base_url": "https://smh\t.example"}, "must not contain spaces"),
        ({"base_url": "https://127.0.0.1:0"}, "must not have port 0"),
        ({"base_url": "https://127.0.0.1:70000"}, "valid port"),
    ],
)
def test_settings_refuse_an_empty_ca_bundle_and_broken_base_urls(
    values: dict[str, str], says: str
) -> None:
    """An empty SMH_CA_BUNDLE is called empty (not "a directory"); a base URL with inner
    white space or a port of 0 (or out of range) is a config error, not retried requests."""
    with pytest.raises(SMHConfigError) as info:
        SMHSettings(_env_file=None, library_id=LIBRARY, **values)
    assert says in str(info.value) and "directory" not in str(info.value)


def test_token_unavailable_names_its_route_once() -> None:
    """The error of a request that got no token names its own route once: the mint's
    error is quoted without its (route=...) tail."""
    cause = SMHServerError("down", status=500, code="InternalError", route="POST /api/v1/token")
    error = token_unavailable(empty_recycle_bin(LIBRARY, "s1"), cause, 0)
    assert str(error).count("route=") == 1
    assert "500 InternalError: down" in str(error)
