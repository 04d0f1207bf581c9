"""A real nginx gateway (Debian's binary, on loopback) in front of the emulator: TLS with a
private CA, rate limiting, frequent keep-alive closes, upstream down → nginx's HTML 502."""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path

import anyio
import pytest

from smh_async import PurgeOutcome, SMHClient, SMHTransportError
from smh_async.testing import FakeServer, FakeSMH
from tests.conftest import LIBRARY, SECRET, make_settings
from tests.nginx_gateway import (
    GatewayConfig,
    NginxGateway,
    make_tls_files,
    nginx_binary,
    openssl_binary,
)

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.nginx,
    pytest.mark.skipif(
        nginx_binary() is None,
        reason="nginx not installed (CI installs nginx-light: apt-get install nginx-light)",
    ),
]

PURGE_PATH = f"/api/v1/recycled/{LIBRARY}/"
needs_openssl = pytest.mark.skipif(
    openssl_binary() is None, reason="openssl CLI not installed (needed to make test certificates)"
)


@pytest.fixture
def gateway_dir(tmp_path: Path) -> Path:
    """A directory for nginx's config, certificates and logs."""
    path = tmp_path / "nginx"
    path.mkdir()
    return path


def purges(gateway: NginxGateway) -> list[tuple[str, int]]:
    """``(space_id, status)`` of every empty-bin DELETE nginx logged."""
    return [
        (path.removeprefix(PURGE_PATH), status)
        for method, path, status in gateway.access_lines()
        if method == "DELETE" and path.startswith(PURGE_PATH)
    ]


@pytest.mark.slow
@needs_openssl
async def test_20k_purge_through_tls_gateway_matches_access_log(
    fake: FakeSMH, server: FakeServer, gateway_dir: Path, tmp_path: Path
) -> None:
    """20,000 spaces via nginx (TLS, private CA, keep-alive closed every 100 requests): zero
    failures, and the access log holds exactly one 204 per accepted space, nothing else."""
    fake.record_requests = False
    ids = fake.add_spaces(LIBRARY, count=20_000, items_per_space=1, item_size=10)
    tls = make_tls_files(gateway_dir / "tls")
    config = GatewayConfig(server.port, tls=tls, keepalive_requests=100)
    spaces = tmp_path / "spaces.txt"
    spaces.write_text("\n".join(ids) + "\n")
    report = tmp_path / "report.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMH_")}
    env["SMH_LIBRARY_SECRET"] = SECRET
    with NginxGateway(gateway_dir, config) as gateway:
        args = ["purge", "--spaces-file", str(spaces), "--base-url", gateway.base_url]
        args += ["--ca-bundle", str(tls.ca), "--library-id", LIBRARY, "--concurrency", "192"]
        args += ["--report", str(report), "--log-level", "warning", "--log-format", "json"]
        proc = await anyio.run_process(
            [sys.executable, "-m", "smh_async", *args],
            env=env,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    assert len(rows) == 20_000 and {r["space_id"] for r in rows} == set(ids)
    assert {(r["outcome"], r["http_status"]) for r in rows} == {("accepted", 204)}
    logged = purges(gateway)
    ok = Counter(space for space, status in logged if status == 204)
    assert ok == Counter(ids)  # each accepted space: exactly one 204 logged for its path
    # Every DELETE attempt the report counts reached nginx (no hidden re-sends, none lost).
    assert len(logged) == sum(r["attempts"] for r in rows)
    assert not any(fake.bin_items(LIBRARY, s) for s in ids[::997])
    log_bytes = gateway.access_log.read_bytes() + gateway.error_log.read_bytes()
    assert (
        SECRET.encode() not in log_bytes and b"access_token" not in gateway.access_log.read_bytes()
    )


async def test_rate_limited_gateway_429s_are_retried(
    fake: FakeSMH, server: FakeServer, gateway_dir: Path
) -> None:
    """nginx limit_req answers HTML 429s; they are retried until every space is accepted."""
    ids = fake.add_spaces(LIBRARY, count=150, items_per_space=1, item_size=10)
    config = GatewayConfig(server.port, rate=100, burst=5)
    outcomes: list[PurgeOutcome] = []
    with NginxGateway(gateway_dir, config) as gateway:
        settings = make_settings(
            server, base_url=gateway.base_url, max_attempts=40, backoff_initial=0.05,
            backoff_max=0.5, concurrency=24,
        )  # fmt: skip
        async with SMHClient(settings) as smh:
            summary = await smh.purge_all(ids, on_outcome=outcomes.append)
    logged = purges(gateway)
    statuses = Counter(status for _, status in logged)
    assert summary.accepted == 150 and summary.failed == 0
    assert statuses[429] > 0 and set(statuses) == {204, 429}
    assert Counter(s for s, status in logged if status == 204) == Counter(ids)
    assert len(logged) == sum(o.attempts for o in outcomes)


async def test_keepalive_churn_loses_nothing(
    fake: FakeSMH, server: FakeServer, gateway_dir: Path
) -> None:
    """nginx closing connections every 2 requests and after 100 ms idle: nothing lost."""
    ids = fake.add_spaces(LIBRARY, count=400, items_per_space=1, item_size=10)
    config = GatewayConfig(server.port, keepalive_requests=2, keepalive_timeout="100ms")
    outcomes: list[PurgeOutcome] = []
    with NginxGateway(gateway_dir, config) as gateway:
        settings = make_settings(server, base_url=gateway.base_url, concurrency=16)
        async with SMHClient(settings) as smh:
            for wave in (ids[:200], ids[200:]):
                await smh.purge_all(wave, on_outcome=outcomes.append)
                await anyio.sleep(0.3)  # every pooled connection goes idle past the timeout
    assert {o.outcome.value for o in outcomes} == {"accepted"} and len(outcomes) == 400
    logged = purges(gateway)
    assert Counter(s for s, status in logged if status == 204) == Counter(ids)
    assert len(logged) <= sum(o.attempts for o in outcomes)


async def test_upstream_down_gives_nginx_html_502_then_recovers(
    fake: FakeSMH, server: FakeServer, gateway_dir: Path
) -> None:
    """With the emulator down nginx answers its own HTML 502: retried, then reported as such;
    once the emulator is back the same spaces are accepted."""
    ids = fake.add_spaces(LIBRARY, count=5, items_per_space=1, item_size=10)
    with NginxGateway(gateway_dir, GatewayConfig(server.port)) as gateway:
        settings = make_settings(server, base_url=gateway.base_url, max_attempts=2)
        async with SMHClient(settings) as smh:
            token = await smh.token_provider.get()
            await server.stop()
            down: list[PurgeOutcome] = []
            await smh.purge_all(ids, on_outcome=down.append)
            await server.start()
            summary = await smh.purge_all(ids)
    assert [(o.outcome.value, o.http_status, o.attempts) for o in down] == [("failed", 502, 2)] * 5
    message = down[0].error_message or ""
    assert "text/html" in message and "502 Bad Gateway" in message and token not in message
    assert summary.accepted == 5
    assert Counter(status for _, status in purges(gateway)) == {502: 10, 204: 5}


@needs_openssl
async def test_tls_without_the_private_ca_is_refused(
    fake: FakeSMH, server: FakeServer, gateway_dir: Path
) -> None:
    """Verification stays on: without ca_bundle the gateway's certificate is rejected."""
    sid = fake.add_space(LIBRARY)
    tls = make_tls_files(gateway_dir / "tls")
    with NginxGateway(gateway_dir, GatewayConfig(server.port, tls=tls)) as gateway:
        token = fake.issue_token(LIBRARY)
        settings = make_settings(
            server, base_url=gateway.base_url, library_secret=None, access_token=token,
            max_attempts=1,
        )  # fmt: skip
        async with SMHClient(settings) as smh:
            with pytest.raises(SMHTransportError) as info:
                await smh.empty_recycle_bin(sid)
    assert "certificate" in str(info.value).lower() and token not in repr(info.value)
    assert not gateway.access_lines() or not purges(gateway)
