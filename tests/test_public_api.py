"""The public API is deliberate: a locked, sorted ``__all__``, documented, typed, runnable."""

from __future__ import annotations

import importlib.metadata
import inspect
import subprocess
import sys
import types
from pathlib import Path

import pytest

import smh_async
import smh_async.testing
from smh_async.testing import SMHFake
from tests import typed_usage

# Changing the public API is a decision: update this list, the README and CHANGELOG together.
PUBLIC_API = [
    "EmptyBinResult",
    "InvalidSpaceIdError",
    "LatencyHistogram",
    "LibrarySecretToken",
    "Outcome",
    "ProgressSnapshot",
    "PurgeOutcome",
    "PurgeRun",
    "PurgeStream",
    "PurgeSummary",
    "RateLimiter",
    "RecycleBinPage",
    "RecycledItem",
    "ReleaseResult",
    "ReleaseWatcher",
    "ReportSummary",
    "ReportWriter",
    "RetryPolicy",
    "SMHAuthError",
    "SMHClient",
    "SMHConfigError",
    "SMHDecodeError",
    "SMHError",
    "SMHNotFoundError",
    "SMHRateLimitedError",
    "SMHResponseError",
    "SMHServerError",
    "SMHSettings",
    "SMHTimeoutError",
    "SMHTransportError",
    "Shard",
    "Space",
    "SpaceUsage",
    "StaticToken",
    "TargetFilter",
    "TokenProvider",
    "__version__",
    "count_targets",
    "read_report",
    "release_path",
    "resume_set",
    "shard_of",
    "summarize_reports",
]
TESTING_API = ["FakeSMH", "FakeServer", "Fault", "RecordedRequest", "SMHFake", "serve_forever"]
MODULES = [(smh_async, PUBLIC_API), (smh_async.testing, TESTING_API)]


@pytest.mark.parametrize(("module", "expected"), MODULES, ids=lambda v: getattr(v, "__name__", ""))
def test_all_is_locked_and_sorted(module: types.ModuleType, expected: list[str]) -> None:
    """``__all__`` is exactly the agreed list, sorted, with no duplicates."""
    assert module.__all__ == expected
    assert module.__all__ == sorted(set(module.__all__))


@pytest.mark.parametrize(("module", "expected"), MODULES, ids=lambda v: getattr(v, "__name__", ""))
def test_nothing_public_outside_all(module: types.ModuleType, expected: list[str]) -> None:
    """Every non-underscore, non-module attribute of the package is listed in ``__all__``."""
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public <= set(expected)


def _public_objects() -> list[tuple[str, object]]:
    return [
        (f"{module.__name__}.{name}", getattr(module, name))
        for module, names in MODULES
        for name in names
        if name != "__version__"
    ]


def _own_doc(obj: object) -> str:
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    return (doc or "").strip()


def test_every_public_name_has_a_docstring() -> None:
    """Each exported class/function, and each public method/property of them, is documented."""
    missing = []
    for qualname, obj in _public_objects():
        doc = _own_doc(obj)
        # dataclasses invent "Name(field, ...)" when undocumented: that is not documentation
        if not doc or doc.startswith(f"{qualname.rsplit('.', 1)[1]}("):
            missing.append(qualname)
        if not inspect.isclass(obj):
            continue
        for attr, value in vars(obj).items():
            func = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
            if not attr.startswith("_") and inspect.isfunction(func) and not func.__doc__:
                missing.append(f"{qualname}.{attr}")
    assert missing == []


def test_version_matches_distribution_metadata() -> None:
    """``smh_async.__version__`` is the installed distribution's version."""
    assert smh_async.__version__ == importlib.metadata.version("smh-async")


def test_package_is_marked_typed() -> None:
    """``py.typed`` ships inside the package, so type checkers use its annotations."""
    assert (Path(smh_async.__file__).parent / "py.typed").is_file()


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["purge", "--help"]])
def test_python_m_matches_console_script(args: list[str]) -> None:
    """``python -m smh_async`` prints exactly what the ``smh-async`` script prints."""
    script = Path(sys.executable).with_name("smh-async")
    if not script.exists():
        pytest.skip("the smh-async console script is not installed next to this interpreter")
    as_module = _run(sys.executable, "-m", "smh_async", *args)
    as_script = _run(str(script), *args)
    assert as_module.returncode == as_script.returncode == 0
    assert as_module.stdout == as_script.stdout
    assert as_module.stdout.startswith("smh-async ") or "usage: smh-async" in as_module.stdout


@pytest.mark.anyio
async def test_typed_usage_runs(smh_fake: SMHFake) -> None:
    """The mypy-checked usage file also runs: every call in it works against the emulator."""
    ids = smh_fake.add_spaces(6, items_per_space=2)
    summary = await typed_usage.exercise(smh_fake.settings(), ids)
    assert (summary.total, summary.accepted, summary.failed) == (6, 6, 0)
    records = await typed_usage.exercise_testing()
    assert [r.status for r in records] == [204]


_HEAVY = ("aiohttp", "anyio", "pydantic", "structlog")
_LIGHT_PROBE = """
import sys
import smh_async
import smh_async._multiproc  # what the --processes parent runs
from smh_async.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:  # argparse's --version
    code = exc.code
print(",".join(m for m in {heavy!r} if m in sys.modules) or "-", code)
"""


@pytest.mark.parametrize("args", [["--version"], ["report", "REPORT"]])
def test_light_paths_start_without_the_network_stack(
    args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``import smh_async``, ``--version``, ``report`` and the ``--processes`` parent import
    no aiohttp, anyio, pydantic or structlog (names load on first use), so they start fast."""
    report = tmp_path / "r.jsonl"
    report.write_text('{"space_id": "a", "outcome": "accepted", "attempts": 1}\n')
    argv = [str(report) if a == "REPORT" else a for a in args]
    probe = _LIGHT_PROBE.format(heavy=_HEAVY)
    done = _run(sys.executable, "-c", probe, *argv)
    assert done.stdout.splitlines()[-1] == "- 0", done.stdout + done.stderr
    # ...and the names still resolve on first use, to the same objects as their modules'.
    from smh_async._client import SMHClient

    assert smh_async.SMHClient is SMHClient
    assert "SMHClient" in dir(smh_async)
    assert set(smh_async._HOME_OF) == set(smh_async.__all__) - {"__version__"}
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = smh_async.nope  # type: ignore[attr-defined]


_BROKEN_DEPENDENCY_PROBE = """
import structlog.stdlib
del structlog.stdlib.LOG_KWARG_NAMES  # as in structlog before 25.1
try:
    from {module} import {name}
except ImportError as exc:
    print(exc)
"""


@pytest.mark.parametrize(
    ("module", "name"), [("smh_async", "SMHClient"), ("smh_async.testing", "SMHFake")]
)
def test_a_failing_import_behind_a_lazy_name_says_why(module: str, name: str) -> None:
    """A dependency that breaks the import of a lazily loaded name shows up in the
    ImportError, not only as "cannot import name" (which sends users hunting a typo)."""
    probe = _BROKEN_DEPENDENCY_PROBE.format(module=module, name=name)
    done = _run(sys.executable, "-c", probe)
    assert "LOG_KWARG_NAMES" in done.stdout, done.stdout + done.stderr
