"""Configuration at the process boundary: the real CLI process, its environment and ``.env``
in its working directory, against the emulator over loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from smh_async._shard import shard_of
from smh_async.testing import FakeServer, FakeSMH
from tests.conftest import LIBRARY, SECRET

pytestmark = pytest.mark.anyio


async def purge(
    server: FakeServer, *args: str, env: dict[str, str] | None = None, secret: bool = True
) -> subprocess.CompletedProcess[bytes]:
    """``smh-async purge ARGS`` in a child process (working directory: the test's tmp_path),
    connection settings (``SMH_LIBRARY_SECRET`` unless not ``secret``) in its environment."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("SMH_", "JOB_"))}
    full.update(SMH_BASE_URL=server.base_url, SMH_LIBRARY_ID=LIBRARY)
    full.update({"SMH_LIBRARY_SECRET": SECRET} if secret else {})
    full.update(env or {})
    return await anyio.run_process(
        [sys.executable, "-m", "smh_async", "purge", "--log-format", "json", *args],
        env=full,
        check=False,
    )


def deletes(fake: FakeSMH) -> list[str]:
    """Space ids of every DELETE that reached the emulator."""
    return [r.space_id or "" for r in fake.requests if r.route == "empty_bin"]


def events(stderr: bytes) -> list[dict[str, object]]:
    """The JSON log events on stderr."""
    return [json.loads(line) for line in stderr.splitlines() if line.startswith(b"{")]


async def test_shard_from_dotenv_selects_the_shard(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """SMH_SHARD_COUNT / SMH_SHARD_INDEX in .env select the shard, as in the environment
    (they were ignored there: every worker purged the whole input)."""
    ids = fake.add_spaces(LIBRARY, count=30, items_per_space=1, item_size=10)
    (tmp_path / ".env").write_text("SMH_SHARD_COUNT=3\nSMH_SHARD_INDEX=1\n")
    proc = await purge(server, *ids)
    assert proc.returncode == 0, proc.stderr
    assert sorted(deletes(fake)) == sorted(i for i in ids if shard_of(i, 3) == 1)


@pytest.mark.parametrize("where", ["environment", ".env"])
async def test_processes_refuse_a_shard_from_the_environment(
    fake: FakeSMH, server: FakeServer, tmp_path: Path, where: str
) -> None:
    """--processes with SMH_SHARD_COUNT set (a sharded Kubernetes job) exits 2, nothing sent,
    as with --shard: the children's own shards replaced it, so each worker purged it all."""
    ids = fake.add_spaces(LIBRARY, count=12, items_per_space=1, item_size=10)
    shard = {"SMH_SHARD_COUNT": "4", "SMH_SHARD_INDEX": "1"}
    if where == ".env":
        (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in shard.items()))
    proc = await purge(server, *ids, "--processes", "2", env=shard if where != ".env" else None)
    assert proc.returncode == 2, proc.stderr
    assert b"--processes cannot take" in proc.stderr and b"SMH_SHARD_COUNT" in proc.stderr
    assert fake.requests == []


async def test_unknown_smh_variable_is_warned_about(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """A misspelt SMH_* variable (environment or .env) is named in a warning with the
    closest known one; its value is never shown (it could be a secret)."""
    sid = fake.add_space(LIBRARY)
    (tmp_path / ".env").write_text("SMH_CONCURENCY=Valueleak-1\n")
    proc = await purge(
        server,
        sid,
        env={"SMH_DRYRUN": "Valueleak-2", "SMH_SHARD_COUNT": "1", "SMH_SHARD_INDEX": "0"},
    )
    assert proc.returncode == 0, proc.stderr
    unknown = {
        str(e["variable"]): e.get("did_you_mean")
        for e in events(proc.stderr)
        if e["event"] == "config.unknown_variable"
    }
    assert unknown == {"SMH_CONCURENCY": "SMH_CONCURRENCY", "SMH_DRYRUN": "SMH_DRY_RUN"}
    assert b"Valueleak" not in proc.stderr + proc.stdout


async def test_processes_warn_about_an_unknown_variable_once(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """With --processes 3 the warning about a misspelt SMH_* variable comes once for the
    run, not once per child; the run itself is unchanged."""
    ids = fake.add_spaces(LIBRARY, count=12, items_per_space=1, item_size=10)
    (tmp_path / "ids.txt").write_text("".join(f"{i}\n" for i in ids))
    proc = await purge(
        server, "--spaces-file", "ids.txt", "--processes", "3", env={"SMH_DRYRUN": "1"}
    )
    assert proc.returncode == 0, proc.stderr
    warned = [e for e in events(proc.stderr) if e["event"] == "config.unknown_variable"]
    assert [(e["variable"], e["did_you_mean"]) for e in warned] == [("SMH_DRYRUN", "SMH_DRY_RUN")]
    assert sorted(deletes(fake)) == sorted(ids)


@pytest.mark.parametrize("form", ["separate", "equals", "abbreviated"])
async def test_processes_children_never_get_a_flag_credential_in_argv(
    fake: FakeSMH, server: FakeServer, tmp_path: Path, form: str
) -> None:
    """A --library-secret / --access-token flag reaches each --processes child in its
    environment, not its command line (which every local user reads in ps): each child's
    /proc/self/cmdline is recorded as it starts; the run still purges everything with it."""
    if not Path("/proc/self/cmdline").exists():
        pytest.skip("needs /proc")
    ids = fake.add_spaces(LIBRARY, count=12, items_per_space=1, item_size=10)
    token = fake.issue_token(LIBRARY, grant="admin")
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os, sys\n"
        "if '--shard' in sys.argv:\n"
        "    out = os.path.join(os.path.dirname(__file__), f'argv.{os.getpid()}')\n"
        "    with open(out, 'wb') as f, open('/proc/self/cmdline', 'rb') as cmdline:\n"
        "        f.write(cmdline.read())\n"
    )
    flags = {
        "separate": ["--library-secret", SECRET, "--access-token", token],
        "equals": [f"--library-secret={SECRET}", f"--access-token={token}"],
        "abbreviated": ["--library-sec", SECRET, f"--access-tok={token}"],
    }[form]
    env = {"PYTHONPATH": str(hook)}
    proc = await purge(server, *ids, *flags, "--processes", "2", env=env, secret=False)
    assert proc.returncode == 0, proc.stderr
    argvs = [p.read_bytes() for p in hook.glob("argv.*")]
    assert len(argvs) == 2 and all(b"--shard" in a for a in argvs)
    assert not any(SECRET.encode() in a or token.encode() in a for a in argvs)
    assert sorted(deletes(fake)) == sorted(ids)
    assert [r for r in fake.requests if r.route == "token_create"] == []  # the token won


async def test_processes_children_take_the_flag_secret_over_an_environment_token(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """--library-secret given as a flag wins over a stale SMH_ACCESS_TOKEN in .env, in each
    --processes child as in one process: tokens are minted from it and every space purged."""
    ids = fake.add_spaces(LIBRARY, count=8, items_per_space=1, item_size=10)
    (tmp_path / ".env").write_text("SMH_ACCESS_TOKEN=tok-stale-1\n")
    proc = await purge(server, *ids, "--library-secret", SECRET, "--processes", "2", secret=False)
    assert proc.returncode == 0, proc.stderr
    assert sorted(deletes(fake)) == sorted(ids)
