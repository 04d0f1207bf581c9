"""smh-async: empty the recycle bins of many Tencent Cloud SMH tenant spaces at once.

``async with SMHClient(SMHSettings()) as smh: await smh.purge_all(space_ids)``. A 204 from
SMH means the request was *accepted*: the service deletes and releases space asynchronously.

This module re-exports the public API only; everything else lives in private ``_modules``
and may change without notice. ``smh_async.testing`` (the emulator and the pytest plugin)
is public too. ``__all__`` is sorted and locked by ``tests/test_public_api.py``.

Names are imported on first use (PEP 562), so ``import smh_async`` and the command line's
light paths (``--help``, ``report``, the ``--processes`` parent) do not pay for importing
aiohttp and pydantic (about 0.4 s).
"""

import typing as _typing

from smh_async._lazy import lazy_names as _lazy_names
from smh_async._version import __version__

if _typing.TYPE_CHECKING:
    from smh_async._auth import LibrarySecretToken, StaticToken, TokenProvider
    from smh_async._bulk import PurgeRun
    from smh_async._client import SMHClient
    from smh_async._errors import (
        InvalidSpaceIdError,
        SMHAuthError,
        SMHConfigError,
        SMHDecodeError,
        SMHError,
        SMHNotFoundError,
        SMHRateLimitedError,
        SMHResponseError,
        SMHServerError,
        SMHTimeoutError,
        SMHTransportError,
    )
    from smh_async._models import (
        EmptyBinResult,
        Outcome,
        PurgeOutcome,
        PurgeSummary,
        RecycleBinPage,
        RecycledItem,
        Space,
        SpaceUsage,
    )
    from smh_async._progress import LatencyHistogram, ProgressSnapshot
    from smh_async._release import ReleaseResult, ReleaseWatcher
    from smh_async._report import (
        ReportSummary,
        ReportWriter,
        read_report,
        release_path,
        resume_set,
        summarize_reports,
    )
    from smh_async._retry import RateLimiter, RetryPolicy
    from smh_async._settings import SMHSettings
    from smh_async._shard import Shard, shard_of
    from smh_async._stream import PurgeStream
    from smh_async._targets import TargetFilter, count_targets

# Where each public name lives (its private module); resolved by __getattr__ below.
_HOMES = {
    "smh_async._auth": "LibrarySecretToken StaticToken TokenProvider",
    "smh_async._bulk": "PurgeRun",
    "smh_async._client": "SMHClient",
    "smh_async._errors": "InvalidSpaceIdError SMHAuthError SMHConfigError SMHDecodeError SMHError"
    " SMHNotFoundError SMHRateLimitedError SMHResponseError SMHServerError SMHTimeoutError"
    " SMHTransportError",
    "smh_async._models": "EmptyBinResult Outcome PurgeOutcome PurgeSummary RecycleBinPage"
    " RecycledItem Space SpaceUsage",
    "smh_async._progress": "LatencyHistogram ProgressSnapshot",
    "smh_async._release": "ReleaseResult ReleaseWatcher",
    "smh_async._report": "ReportSummary ReportWriter read_report release_path resume_set"
    " summarize_reports",
    "smh_async._retry": "RateLimiter RetryPolicy",
    "smh_async._settings": "SMHSettings",
    "smh_async._shard": "Shard shard_of",
    "smh_async._stream": "PurgeStream",
    "smh_async._targets": "TargetFilter count_targets",
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names.split()}


_getattr, __dir__ = _lazy_names(globals(), _HOME_OF)
# Hidden from type checkers: they see the imports above, so a misspelt name stays an error.
if not _typing.TYPE_CHECKING:
    __getattr__ = _getattr


__all__ = [
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
