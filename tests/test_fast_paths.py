"""The per-space fast paths give exactly what the general code they short-cut would give.

Each hot path (report row text, the CLI's redaction check, the CLI's JSON renderer, the
space-id check, the timestamps) has a cheaper special case for the common input; these
properties pin the special case to the general one for any input.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from smh_async import InvalidSpaceIdError, Outcome, PurgeOutcome
from smh_async import _protocol as proto
from smh_async._clock import utc_iso
from smh_async._logging import Redactor, _render_json, add_timestamp
from smh_async._report import _ENCODER, encode_outcome

TEXT = st.text(max_size=40)
OPTIONAL_TEXT = st.none() | TEXT
FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.floats(0, 1e6)
EXTRA_VALUES = st.none() | st.booleans() | st.integers() | FLOATS | TEXT
EXTRA_KEYS = st.sampled_from(["bin_items", "verified", "size_before", "attempts", "space_id"])

outcomes = st.builds(
    PurgeOutcome,
    space_id=TEXT,
    outcome=st.sampled_from(list(Outcome)),
    http_status=st.none() | st.integers(100, 599),
    error_code=OPTIONAL_TEXT,
    error_message=OPTIONAL_TEXT,
    request_id=OPTIONAL_TEXT,
    attempts=st.integers(0, 50),
    elapsed_ms=FLOATS,
    finished_at=TEXT,
    extra=st.dictionaries(EXTRA_KEYS | TEXT, EXTRA_VALUES, max_size=4),
)


@given(outcomes)
def test_report_row_text_equals_generic_encoding(outcome: PurgeOutcome) -> None:
    """The field-by-field report row is the same text as encoding ``to_record()``."""
    assert encode_outcome(outcome) == _ENCODER.encode(outcome.to_record())


SECRETS = ["tok-SECRET-123", "library-secret-xyz"]
EVENT_TEXT = st.sampled_from(
    [
        "",
        " padded ",
        "plain words",
        "a=b",
        "url?access_token=abc&x=1",
        "/api/v1/token/lib/tok/renew",
        "bell\x07",
        "has tok-SECRET-123 inside",
        "library-secret-xyz",
        "é unicode ✓",
    ]
) | st.text(max_size=30)
EVENT_VALUES = st.none() | st.integers() | st.floats(allow_nan=False) | st.booleans() | EVENT_TEXT
EVENT_KEYS = st.sampled_from(["event", "space_id", "token", "library_secret", "msg", "password"])


@given(st.dictionaries(EVENT_KEYS | st.text(max_size=12), EVENT_VALUES, max_size=8))
def test_redactor_fast_path_equals_full_scrub(event: dict[str, Any]) -> None:
    """Skipping events that look clean never skips anything the full scrub would change."""
    redactor = Redactor(SECRETS)
    expected = {key: redactor._clean(key, value) for key, value in event.items()}
    assert dict(redactor(None, "info", dict(event))) == expected


class _Custom:
    def __structlog__(self) -> str:
        return "custom-form"


def test_cli_json_renderer_matches_structlog_default() -> None:
    """The CLI's shared-encoder renderer writes what structlog's default JSONRenderer writes."""
    ours = structlog.processors.JSONRenderer(serializer=_render_json)
    default = structlog.processors.JSONRenderer()
    event = {"event": "x", "n": 1, "f": 2.5, "none": None, "custom": _Custom(), "set": {1}}
    assert ours(None, "info", dict(event)) == default(None, "info", dict(event))
    assert json.loads(ours(None, "info", dict(event)))["custom"] == "custom-form"


@given(st.text(max_size=300))
def test_space_id_check_accepts_exactly_the_safe_segments(value: str) -> None:
    """The fast acceptance path accepts only what the full rules accept."""
    unreserved = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")
    safe = 0 < len(value) <= proto.MAX_SEGMENT and value not in (".", "..")
    safe = safe and set(value) <= unreserved
    if safe:
        assert proto.check_path_segment(value) == value
    else:
        with pytest.raises(InvalidSpaceIdError):
            proto.check_path_segment(value)


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@given(st.integers(0, 253_402_300_799 * 10**9))  # 1970 to the end of datetime's year 9999
def test_cached_utc_timestamps_equal_datetime_formatting(ns: int) -> None:
    """``utc_iso`` (date and time formatted once per second) equals datetime's own text."""
    exact = EPOCH + timedelta(microseconds=ns // 1000)
    micro = exact.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"
    assert utc_iso(ns, 6) == micro
    assert utc_iso(ns, 3) == micro[:-4] + "Z"


def test_cli_timestamp_has_structlogs_iso_utc_form() -> None:
    """The CLI's ``timestamp`` has TimeStamper(fmt="iso", utc=True)'s exact shape and clock."""
    ours = add_timestamp(None, "info", {})["timestamp"]
    theirs = structlog.processors.TimeStamper(fmt="iso", utc=True)(None, "info", {})["timestamp"]
    shape = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
    assert shape.match(ours) and shape.match(theirs), (ours, theirs)
    gap = datetime.fromisoformat(theirs[:-1]) - datetime.fromisoformat(ours[:-1])
    assert timedelta(0) <= gap < timedelta(seconds=1)
