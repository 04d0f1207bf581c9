"""smh-async: empty the recycle bins of many Tencent Cloud SMH tenant spaces at once.

``async with SMHClient(SMHSettings()) as smh: await smh.purge_all(space_ids)``. A 204 from
SMH means the request was *accepted*: the service deletes and releases space asynchronously.

This module re-exports the public API only; everything else lives in private ``_modules``
and may change without notice. ``smh_async.testing`` (the emulator and the pytest plugin)
is public too. ``__all__`` is sorted and locked by ``tests/test_public_api.py``.
"""

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
from smh_async._version import __version__

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
