"""The pytest plugin, exercised the way users meet it: a separate pytest suite run by pytester.

The inner suites have no conftest and pass no ``-p``: the fixtures resolve only because the
installed package registers the plugin by entry point.
"""

from __future__ import annotations

import textwrap

import pytest

# pytest-asyncio is installed too (strict mode, its default): the fixtures must coexist.
INI = """
[pytest]
filterwarnings = error
asyncio_default_fixture_loop_scope = function
"""

HEADER = """
import anyio
import pytest

from smh_async import SMHClient
from smh_async.testing import Fault, SMHFake

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"
"""


def run_suite(
    pytester: pytest.Pytester, body: str, *, header: str = HEADER, ini: str = INI
) -> pytest.RunResult:
    """Write one test module (shared header + ``body``) and run it in-process."""
    pytester.makeini(ini)
    pytester.makepyfile(test_user_suite=header + textwrap.dedent(body))
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q")


def test_plugin_fixtures_purge_and_record_requests(pytester: pytest.Pytester) -> None:
    """A user suite purges through smh_client and asserts on exactly what smh_fake served."""
    result = run_suite(
        pytester,
        """
        async def test_purge_all(smh_fake: SMHFake, smh_client: SMHClient) -> None:
            ids = smh_fake.add_spaces(5, items_per_space=2, item_size=10)
            summary = await smh_client.purge_all(ids, concurrency=3)
            assert (summary.accepted, summary.failed) == (5, 0)
            assert all(smh_fake.bin_items(space_id) == [] for space_id in ids)
            deletes = smh_fake.requests_to("empty_bin")
            assert sorted(r.space_id for r in deletes) == sorted(ids)
            assert {(r.method, r.status, r.library_id) for r in deletes} == {
                ("DELETE", 204, smh_fake.library_id)
            }
            assert len(smh_fake.requests_to("token_create")) == 1

        async def test_attributes(smh_fake: SMHFake) -> None:
            assert smh_fake.base_url.startswith("http://127.0.0.1:")
            assert smh_fake.library_id and smh_fake.library_secret
            assert smh_fake.requests == []
            space_id = smh_fake.add_space("tenant-a", bin_item_sizes=[7, 8])
            assert smh_fake.bin_items(space_id) == [7, 8]
        """,
    )
    result.assert_outcomes(passed=2)


def test_plugin_inner_failures_are_reported(pytester: pytest.Pytester) -> None:
    """A wrong expectation in a user suite fails there: the fixtures really run the purge."""
    result = run_suite(
        pytester,
        """
        async def test_expects_items_left(smh_fake: SMHFake, smh_client: SMHClient) -> None:
            space_id = smh_fake.add_space(bin_item_sizes=[1])
            await smh_client.empty_recycle_bin(space_id)
            assert smh_fake.bin_items(space_id) == [1]
        """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*assert [[][]] == [[]1[]]*"])


def test_plugin_faults_retries_and_teardown(pytester: pytest.Pytester) -> None:
    """Faults injected through smh_fake show up as retries; each test gets a fresh emulator."""
    result = run_suite(
        pytester,
        """
        SEEN = []

        async def test_retry_is_recorded(smh_fake: SMHFake, smh_client: SMHClient) -> None:
            SEEN.append(smh_fake)
            space_id = smh_fake.add_space()
            fault = smh_fake.add_fault(Fault("status", status=503, route="empty_bin", times=1))
            result = await smh_client.empty_recycle_bin(space_id)
            assert result.attempts == 2 and fault.applied == 1
            assert [r.status for r in smh_fake.requests_to("empty_bin")] == [503, 204]

        async def test_fresh_emulator(smh_fake: SMHFake) -> None:
            previous = SEEN[0]
            assert not previous.server.running
            assert smh_fake is not previous and smh_fake.base_url != previous.base_url
            assert smh_fake.requests == []
        """,
    )
    result.assert_outcomes(passed=2)


def test_plugin_ignores_developer_credentials(pytester: pytest.Pytester) -> None:
    """SMH_* credentials in the environment or .env never replace the emulator's secret."""
    (pytester.path / ".env").write_text("SMH_ACCESS_TOKEN=real-token-from-dotenv\n")
    result = run_suite(
        pytester,
        """
        async def test_env_token_ignored(
            smh_fake: SMHFake, smh_client: SMHClient, monkeypatch: pytest.MonkeyPatch
        ) -> None:
            monkeypatch.setenv("SMH_ACCESS_TOKEN", "real-token-from-env")
            space_id = smh_fake.add_space()
            async with smh_fake.client() as smh:
                await smh.empty_recycle_bin(space_id)
            assert smh_fake.settings().access_token is None
            assert len(smh_fake.requests_to("token_create")) == 1
        """,
    )
    result.assert_outcomes(passed=1)


def test_plugin_ignores_developer_tuning(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator's SMH_* tuning (attempts, a broken value) never changes smh_fake's client."""
    monkeypatch.setenv("SMH_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("SMH_CONCURRENCY", "not-a-number")
    (pytester.path / ".env").write_text("SMH_TIMEOUT=0.000001\n")
    result = run_suite(
        pytester,
        """
        async def test_retry_despite_env(smh_fake: SMHFake, smh_client: SMHClient) -> None:
            space_id = smh_fake.add_space()
            smh_fake.add_fault(Fault("status", status=503, route="empty_bin", times=1))
            result = await smh_client.empty_recycle_bin(space_id)
            assert result.attempts == 2
            assert smh_fake.bin_items(space_id) == []
        """,
    )
    result.assert_outcomes(passed=1)


def test_plugin_costs_nothing_in_suites_that_do_not_use_it(pytester: pytest.Pytester) -> None:
    """A project's pytest run that never asks for smh_fake imports no aiohttp, pydantic or
    client code: the auto-loaded plugin neither slows nor can break unrelated suites."""
    pytester.makeini(INI)
    pytester.makepyfile(
        test_unrelated="""
        import sys

        def test_nothing_heavy_was_imported():
            heavy = ("aiohttp", "pydantic", "structlog", "smh_async._client")
            assert [name for name in heavy if name in sys.modules] == []
            assert "smh_async.testing._plugin" in sys.modules
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=1)


AUTO_INI = INI + "asyncio_mode = auto\n"
AUTO_HEADER = """
from smh_async import SMHClient
from smh_async.testing import Fault, SMHFake
"""


def test_plugin_fixtures_under_pytest_asyncio_auto_mode(pytester: pytest.Pytester) -> None:
    """In pytest-asyncio's auto mode (it runs every async test and fixture) unmarked tests
    get a working emulator and client on the test's own event loop."""
    result = run_suite(
        pytester,
        """
        async def test_purge(smh_fake: SMHFake, smh_client: SMHClient) -> None:
            ids = smh_fake.add_spaces(3, items_per_space=1)
            smh_fake.add_fault(Fault("status", status=503, route="empty_bin", times=1))
            summary = await smh_client.purge_all(ids)
            assert (summary.accepted, summary.failed) == (3, 0)
            assert all(smh_fake.bin_items(space_id) == [] for space_id in ids)

        async def test_own_client(smh_fake: SMHFake) -> None:
            space_id = smh_fake.add_space()
            async with SMHClient(smh_fake.settings()) as smh:
                await smh.empty_recycle_bin(space_id)
            assert smh_fake.bin_items(space_id) == []
        """,
        header=AUTO_HEADER,
        ini=AUTO_INI,
    )
    result.assert_outcomes(passed=2)


def test_plugin_names_the_clash_of_two_runners(pytester: pytest.Pytester) -> None:
    """An anyio-marked test under pytest-asyncio's auto mode (two plugins, two event loops)
    fails at once saying what to change, instead of timing out inside the client."""
    result = run_suite(
        pytester,
        """
        async def test_anyio_marked(smh_fake: SMHFake, smh_client: SMHClient) -> None:
            await smh_client.empty_recycle_bin(smh_fake.add_space())
        """,
        ini=AUTO_INI,
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*run by pytest-asyncio*drop @pytest.mark.anyio*"])
