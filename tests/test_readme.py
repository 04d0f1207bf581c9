"""README.md cannot rot: its Python blocks run against the emulator, its references match code.

Convention for ```` ```python ```` blocks (the marker is the last non-blank line before the
fence):

- no marker: a script, run in a fresh interpreter with ``SMH_*`` variables pointing at an
  emulator that holds every ``space…`` id the block mentions; it must exit 0.
- ``<!-- pytest -->``: a test module for a user's suite, run by pytester; every test passes.
- ``<!-- no-run -->``: only compiled (for fragments that cannot run on their own).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from smh_async import SMHSettings
from smh_async.cli import build_parser
from smh_async.testing import SMHFake

README = Path(__file__).resolve().parent.parent / "README.md"
FENCE = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)
MARKER = re.compile(r"<!--\s*([a-z-]+)\s*-->\s*\Z")
SPACE_ID = re.compile(r"\bspace[0-9a-z]{13}\b")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


@dataclass(frozen=True)
class Block:
    """One fenced Python block of the README."""

    line: int
    kind: str  # "script" | "pytest" | "no-run"
    code: str


def readme_blocks() -> list[Block]:
    """Every ```python block with its kind, from the preceding marker comment."""
    text = README.read_text(encoding="utf-8")
    blocks = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip()
        marker = MARKER.search(before)
        kind = marker.group(1) if marker else "script"
        if kind not in ("script", "pytest", "no-run"):
            raise ValueError(f"README line {text.count(chr(10), 0, match.start()) + 1}: {kind!r}")
        blocks.append(Block(text.count("\n", 0, match.start()) + 1, kind, match.group(1)))
    return blocks


BLOCKS = readme_blocks()


def of_kind(kind: str) -> list[Block]:
    """Blocks of one kind, for parametrizing (ids are README line numbers)."""
    return [b for b in BLOCKS if b.kind == kind]


def readme_section(heading: str) -> str:
    """The text of a ``## heading`` section up to the next level-2 heading."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_readme_has_runnable_examples() -> None:
    """The README's library, embedding and plugin sections have blocks this suite executes."""
    assert len(of_kind("script")) >= 3
    assert len(of_kind("pytest")) >= 1


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: f"line{b.line}")
def test_readme_block_compiles(block: Block) -> None:
    """Every Python block, including no-run fragments, is valid Python."""
    compile(block.code, f"README.md:{block.line}", "exec")


@pytest.mark.anyio
@pytest.mark.parametrize("block", of_kind("script"), ids=lambda b: f"line{b.line}")
async def test_readme_script_runs_against_emulator(block: Block) -> None:
    """A script block, run as a user would with SMH_* set to the emulator, exits 0."""
    async with SMHFake(library_id="smhreadmelib") as smh_fake:
        for space_id in sorted(set(SPACE_ID.findall(block.code))):
            smh_fake.add_space(space_id, bin_item_sizes=[1024, 2048])
        smh_fake.add_spaces(3)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMH_")}
        env |= {
            "SMH_BASE_URL": smh_fake.base_url,
            "SMH_LIBRARY_ID": smh_fake.library_id,
            "SMH_LIBRARY_SECRET": smh_fake.library_secret,
        }
        with anyio.fail_after(60):
            proc = await anyio.run_process([sys.executable, "-c", block.code], env=env, check=False)
        assert proc.returncode == 0, proc.stderr.decode()
        assert smh_fake.requests_to("empty_bin"), "the example never emptied a bin"
        assert all(r.status is not None and r.status < 500 for r in smh_fake.requests)


@pytest.mark.parametrize("block", of_kind("pytest"), ids=lambda b: f"line{b.line}")
def test_readme_pytest_block_passes(block: Block, pytester: pytest.Pytester) -> None:
    """A test-suite block passes when run by pytest with only the installed plugin."""
    # pytest-asyncio is installed as well (in its default strict mode), as in many projects.
    pytester.makeini(
        "[pytest]\nfilterwarnings = error\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(test_from_readme=block.code)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q")
    tests = len(re.findall(r"^async def test_|^def test_", block.code, re.M))
    result.assert_outcomes(passed=tests)


# ---------------------------------------------------------------- references


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _long_flags(parser: argparse.ArgumentParser) -> set[str]:
    return {
        opt
        for action in parser._actions
        for opt in action.option_strings
        if opt.startswith("--") and opt != "--help"
    }


def test_readme_documents_every_purge_flag() -> None:
    """Each long option of ``smh-async purge`` appears in the README's Command line section."""
    purge = _subparsers(build_parser())["purge"]
    documented = set(FLAG.findall(readme_section("Command line")))
    missing = sorted(_long_flags(purge) - documented)
    assert missing == [], f"README's Command line section lacks {', '.join(missing)}"


def test_readme_mentions_no_unknown_flag() -> None:
    """Every ``--flag`` the README mentions is defined by some smh-async (sub)command."""
    parser = build_parser()
    known = _long_flags(parser) | {"--help"}
    for sub in _subparsers(parser).values():
        known |= _long_flags(sub)
    mentioned = set(FLAG.findall(README.read_text(encoding="utf-8")))
    # flags of other programs quoted in shell examples
    foreign = {"--strict"}  # mypy --strict, in the Development section
    assert sorted(mentioned - known - foreign) == []


def test_readme_configuration_table_matches_settings() -> None:
    """The Configuration table lists exactly the ``SMH_*`` variables SMHSettings reads."""
    table = readme_section("Configuration")
    documented = set(re.findall(r"^\| `(SMH_[A-Z0-9_]+)`", table, re.M))
    fields = {f"SMH_{name.upper()}" for name in SMHSettings.model_fields}
    assert sorted(fields - documented) == [] and sorted(documented - fields) == []


def test_readme_says_exactly_what_is_retried() -> None:
    """The Retries paragraph names every status and SMH code that is retried (it said
    "Other 4xx are not retried" while 409 PathConflict and LibraryInitializing were)."""
    from smh_async._protocol import RETRYABLE_CODES, RETRYABLE_STATUSES

    text = README.read_text(encoding="utf-8")
    paragraph = text[text.index("Retries: ") :].split("\n\n", 1)[0]
    for status in sorted(RETRYABLE_STATUSES):
        assert str(status) in paragraph, status
    for code in sorted(RETRYABLE_CODES):
        assert f"`{code}`" in paragraph, code
    assert "Other 4xx are not retried" not in paragraph
