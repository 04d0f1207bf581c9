"""smh-async: empty the recycle bins of many Tencent Cloud SMH tenant spaces at once.

``async with SMHClient(SMHSettings()) as smh: await smh.purge_all(space_ids)``. A 204 from
SMH means the request was *accepted*: the service deletes and releases space asynchronously.
"""

from smh_async._auth import LibrarySecretToken, StaticToken, TokenProvider
from smh_async._bulk import LatencyHistogram, PurgeRun, PurgeStream
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
from smh_async._report import ReportWriter, read_report, resume_set
from smh_async._retry import RateLimiter, RetryPolicy
from smh_async._settings import SMHSettings
from smh_async._version import __version__

__all__ = [
    "EmptyBinResult",
    "InvalidSpaceIdError",
    "LatencyHistogram",
    "LibrarySecretToken",
    "Outcome",
    "PurgeOutcome",
    "PurgeRun",
    "PurgeStream",
    "PurgeSummary",
    "RateLimiter",
    "RecycleBinPage",
    "RecycledItem",
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
    "Space",
    "SpaceUsage",
    "StaticToken",
    "TokenProvider",
    "__version__",
    "read_report",
    "resume_set",
]
