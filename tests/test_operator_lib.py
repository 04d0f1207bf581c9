"""The operator features as library API: shard filter, progress, release watch, report merge."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from smh_async import (
    Outcome,
    ProgressSnapshot,
    PurgeOutcome,
    PurgeRun,
    ReleaseResult,
    ReportWriter,
    Shard,
    SMHClient,
    SMHServerError,
    TargetFilter,
    read_report,
    resume_set,
    shard_of,
    summarize_reports,
)
from smh_async._release import snapshot_sizes
from smh_async._report import (
    concatenate_reports,
    release_path,
)
from smh_async.testing import FakeServer, FakeSMH
from tests.conftest import LIBRARY, make_settings


def test_shard_hash_is_stable_and_partitions() -> None:
    """shard_of is SHA-256 based (a fixed, documented value) and shards 0..N-1 partition ids."""
    assert shard_of("space04fzo07fdq61b", 1000) == 395  # = sha256 hex[:16] mod 1000
    ids = [f"space{i:06d}" for i in range(5000)]
    shards = [Shard(i, 4) for i in range(4)]
    owners = [[s for s in shards if space_id in s] for space_id in ids]
    assert all(len(o) == 1 for o in owners)
    sizes = [sum(1 for o in owners if o[0] is s) for s in shards]
    assert min(sizes) > 1100  # roughly even: 1250 expected each


@pytest.mark.parametrize(
    ("spec", "env", "expected"),
    [
        ("2/5", {}, Shard(2, 5)),
        ("/5", {"JOB_COMPLETION_INDEX": "4"}, Shard(4, 5)),
        (None, {"SMH_SHARD_COUNT": "3", "JOB_COMPLETION_INDEX": "1"}, Shard(1, 3)),
        (None, {}, None),
    ],
)
def test_shard_parse_sources(spec: str | None, env: dict[str, str], expected: Shard | None) -> None:
    """I/N, /N with the Kubernetes index, and SMH_SHARD_COUNT all select the same kind of shard."""
    assert Shard.parse(spec, env) == expected


@pytest.mark.parametrize("spec", ["5/5", "-1/2", "a/b", "3", "/4"])
def test_shard_parse_rejects_nonsense(spec: str) -> None:
    """Out-of-range, non-numeric, slash-less or index-less specs raise ValueError."""
    with pytest.raises(ValueError, match="shard"):
        Shard.parse(spec, {})


def test_progress_snapshot_is_honest_about_the_total() -> None:
    """Unknown total shows '?', a lower bound '≥M' without ETA, an exact one 'M' with ETA."""

    def snap(total: int | None, final: bool) -> ProgressSnapshot:
        return ProgressSnapshot(10, total, final, 10, 0, 0, in_flight=2, elapsed_s=2.0)

    unknown, bound, exact = snap(None, False), snap(40, False), snap(40, True)
    assert unknown.to_dict()["progress"] == "10 of ?" and unknown.eta_s is None
    assert bound.to_dict()["progress"] == "10 of >=40" and bound.eta_s is None
    assert exact.to_dict()["progress"] == "10 of 40" and exact.eta_s == 6.0
    assert exact.line().startswith("10/40 (25.0%)  5.0/s  ETA 0:06")


@pytest.mark.anyio
async def test_on_progress_reports_the_known_total(fake: FakeSMH, server: FakeServer) -> None:
    """on_progress gets snapshots during the run and a final one with done == total."""
    ids = fake.add_spaces(LIBRARY, count=40, items_per_space=1, item_size=10)
    fake.latency = 0.02
    seen: list[ProgressSnapshot] = []
    async with SMHClient(make_settings(server, concurrency=4)) as smh:
        run = PurgeRun(smh, on_progress=seen.append, progress_interval=0.05, total=len(ids))
        await run.run(ids)
    assert len(seen) >= 3 and seen[0].total == 40 and seen[0].done < 40
    assert (seen[-1].done, seen[-1].total, seen[-1].total_final) == (40, 40, True)


@pytest.mark.anyio
async def test_max_duration_stops_launching_and_lets_in_flight_finish(
    fake: FakeSMH, server: FakeServer
) -> None:
    """After max_duration no space starts; those in flight finish (accepted, not cut);
    every space that reached the server is accepted, every other is skipped/NotStarted;
    aborted = "max_duration"."""
    ids = fake.add_spaces(LIBRARY, count=100, items_per_space=1, item_size=10)
    fake.latency = 0.05
    outcomes: list[PurgeOutcome] = []
    async with SMHClient(make_settings(server, concurrency=4)) as smh:
        summary = await PurgeRun(smh, max_duration=0.3, on_outcome=outcomes.append).run(ids)
    sent = [r.space_id for r in fake.requests if r.route == "empty_bin"]
    assert summary.aborted == "max_duration" and 4 <= summary.accepted < 100
    accepted = [o.space_id for o in outcomes if o.outcome is Outcome.ACCEPTED]
    assert sorted(accepted) == sorted(s or "" for s in sent)
    assert sorted(o.space_id for o in outcomes) == sorted(ids) and summary.total == 100
    rest = {(o.outcome, o.error_code) for o in outcomes if o.space_id not in set(accepted)}
    assert rest == {(Outcome.SKIPPED, "NotStarted")}
    assert summary.skipped == 100 - summary.accepted


@pytest.mark.anyio
async def test_a_source_that_gives_out_raises_its_error_after_the_started_spaces_finish(
    fake: FakeSMH, server: FakeServer
) -> None:
    """An id source failing mid-run (a listing that gave out) stops the reading; the ids read
    before it are purged to the end (not cut off as Interrupted) and then its SMHError is
    raised as such: it used to escape wrapped in an ExceptionGroup."""
    ids = fake.add_spaces(LIBRARY, count=6, items_per_space=1, item_size=10)
    fake.latency = 0.05

    async def source() -> AsyncIterator[str]:
        for space_id in ids[:5]:
            yield space_id
        raise SMHServerError("listing gave out", status=503, code="ServiceUnavailable")

    outcomes: list[PurgeOutcome] = []
    async with SMHClient(make_settings(server, concurrency=8)) as smh:
        with pytest.raises(SMHServerError, match="listing gave out"):
            await smh.purge_all(source(), on_outcome=outcomes.append)
    assert sorted(o.space_id for o in outcomes) == sorted(ids[:5])
    assert {o.outcome for o in outcomes} == {Outcome.ACCEPTED}
    assert sorted(r.space_id or "" for r in fake.requests if r.route == "empty_bin") == sorted(
        ids[:5]
    )


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_an_on_outcome_that_raises_stops_the_run_and_is_raised(
    fake: FakeSMH, server: FakeServer, kind: str
) -> None:
    """A callback that fails (a report on a full disk) stops launching; spaces in flight
    finish and are still handed over; run() raises the callback's own error at the end."""
    ids = fake.add_spaces(LIBRARY, count=200, items_per_space=1, item_size=10)
    fake.latency = 0.02
    seen: list[str] = []

    def record(outcome: PurgeOutcome) -> None:
        seen.append(outcome.space_id)
        if len(seen) >= 3:
            raise OSError(28, "No space left on device")

    async def record_async(outcome: PurgeOutcome) -> None:
        record(outcome)

    async with SMHClient(make_settings(server, concurrency=4)) as smh:
        run = PurgeRun(smh, on_outcome=record if kind == "sync" else record_async)
        with pytest.raises(OSError, match="No space left"):
            await run.run(ids)
    sent = [r.space_id or "" for r in fake.requests if r.route == "empty_bin"]
    assert sorted(seen) == sorted(sent) and 3 <= len(sent) <= 3 + 4
    assert run.summary().aborted == "on_outcome_failed"


@pytest.mark.anyio
async def test_max_duration_longer_than_the_run_changes_nothing(
    fake: FakeSMH, server: FakeServer
) -> None:
    """A window that does not run out leaves the run whole and unaborted."""
    ids = fake.add_spaces(LIBRARY, count=30, items_per_space=1, item_size=10)
    async with SMHClient(make_settings(server, concurrency=4)) as smh:
        summary = await PurgeRun(smh, max_duration=60).run(ids)
    assert (summary.accepted, summary.aborted) == (30, None)


@pytest.mark.anyio
async def test_target_filter_counts_shard_and_resume_skips(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """A TargetFilter of shard + resume set leaves exactly the remaining shard members to purge."""
    ids = fake.add_spaces(LIBRARY, count=60, items_per_space=1, item_size=10)
    shard = Shard(0, 2)
    mine = [s for s in ids if s in shard]
    report = tmp_path / "r.jsonl"
    with ReportWriter(report) as writer:
        for space_id in mine[:5]:
            writer.write(PurgeOutcome(space_id, Outcome.ACCEPTED))
    skip = TargetFilter(shard, resume_set([report]))
    async with SMHClient(make_settings(server)) as smh:
        summary = await smh.purge_all(ids, skip=skip)
    assert summary.accepted == len(mine) - 5
    assert (skip.not_in_shard, skip.already_done) == (60 - len(mine), 5)


@pytest.mark.anyio
async def test_size_snapshot_survives_an_unknown_id(fake: FakeSMH, server: FakeServer) -> None:
    """One unknown id in a usage batch does not lose the other spaces' sizes."""
    ids = fake.add_spaces(LIBRARY, count=10, items_per_space=2, item_size=50)
    async with SMHClient(make_settings(server)) as smh:
        sizes = await snapshot_sizes(smh, [*ids[:5], "nosuch", *ids[5:], "bad/id"])
    assert sizes == dict.fromkeys(ids, 100)


@pytest.mark.anyio
async def test_wait_release_sees_the_space_released(fake: FakeSMH, server: FakeServer) -> None:
    """With a fast release, every accepted space ends 'released' with size_after below before."""
    ids = fake.add_spaces(LIBRARY, count=30, items_per_space=2, item_size=100, file_bytes=7)
    results: list[ReleaseResult] = []
    async with SMHClient(make_settings(server)) as smh:
        summary = await smh.purge_all(ids, wait_release=10, on_release=results.append)
    assert summary.counters["released"] == 30 and len(results) == 30
    assert {(r.size_before, r.size_after) for r in results} == {(207, 7)}


def test_summarize_reports_writes_one_final_row_per_space(tmp_path: Path) -> None:
    """Last row wins across files; the merged output has one row per space in file order."""
    a, b, out = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "out.jsonl"
    a.write_text(
        "\n".join(
            json.dumps({"space_id": s, "outcome": o})
            for s, o in [("x", "failed"), ("y", "accepted")]
        )
    )
    b.write_text(json.dumps({"space_id": "x", "outcome": "accepted"}) + "\n")
    summary = summarize_reports([a, b], output=out)
    assert (summary.rows, summary.spaces, summary.failed) == (3, 2, 0)
    assert [json.loads(line)["space_id"] for line in out.read_text().splitlines()] == ["y", "x"]


def _shard_parts(tmp_path: Path) -> list[Path]:
    """Two disjoint shard parts with release siblings; part 0 ends in a torn line."""
    rows = [
        [("a1", "accepted", None), ("a2", "failed", "NoSuchSpace"), ("a3", "accepted", None)],
        [("b1", "accepted", None), ("b2", "failed", "Timeout")],
    ]
    parts = []
    for i, shard in enumerate(rows):
        part = tmp_path / f"r.jsonl.part{i}of2"
        with part.open("w", encoding="utf-8") as f:
            for space, outcome, code in shard:
                f.write(json.dumps({"space_id": space, "outcome": outcome, "error_code": code}))
                f.write("\n")
        release_row = {"space_id": shard[0][0], "release": "released"}
        release_path(part).write_text(json.dumps(release_row) + "\n")
        parts.append(part)
    with parts[0].open("a", encoding="utf-8") as f:
        f.write('{"space_id": "a4", "outco')  # killed mid-write
    return parts


def test_concatenating_shard_parts_equals_the_full_merge(tmp_path: Path) -> None:
    """Disjoint shard parts: the one-pass concatenation gives the full merge's summary and rows."""
    parts = _shard_parts(tmp_path)
    fast, full = tmp_path / "fast.jsonl", tmp_path / "full.jsonl"
    summary = concatenate_reports(parts, output=fast)
    assert summary == summarize_reports(parts, output=full)
    assert (summary.spaces, summary.failed, summary.release["released"]) == (5, 2, 2)
    rows = [json.loads(line) for line in fast.read_text().splitlines()]  # every line parses
    assert [r["space_id"] for r in rows] == ["a1", "a2", "a3", "b1", "b2"]
    assert rows == [json.loads(line) for line in full.read_text().splitlines()]


def test_a_report_line_of_absurdly_nested_json_is_skipped_like_a_torn_one(
    tmp_path: Path,
) -> None:
    """A line of 100,000 nested arrays (a corrupt or hostile file) is skipped by read_report,
    resume_set and summarize_reports instead of ending the run in a RecursionError."""
    report = tmp_path / "r.jsonl"
    good = {"space_id": "s1", "outcome": "accepted"}
    report.write_bytes(b"[" * 100_000 + b"]" * 100_000 + b"\n" + json.dumps(good).encode() + b"\n")
    assert list(read_report(report)) == [good]
    assert "s1" in resume_set([report])
    assert summarize_reports([report]).by_outcome == {"accepted": 1}


@pytest.mark.anyio
@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 20])
async def test_a_pipe_gives_the_same_ids_as_a_file_however_it_is_written(chunk: int) -> None:
    """ids read from a pipe (off the event loop, chunk by chunk) equal those read from a file
    with the same bytes: UTF-8 BOM dropped, CRLF, blanks and comments skipped, an over-long
    line cut, undecodable bytes escaped, a last line without newline kept."""
    import io
    import os
    import threading

    from smh_async._targets import MAX_LINE, read_space_file, read_stream_ids

    data = (
        b"\xef\xbb\xbfspace-a\r\n\n# comment\nspace-b\n"
        + b"x" * (MAX_LINE + 500)
        + b"\nspace-\xff\nspace-c\n  space-d  \nspace-e"
    )
    expected = list(read_space_file(io.BytesIO(data)))
    assert expected[0] == "space-a" and expected[-1] == "space-e" and len(expected) == 7
    read_end, write_end = os.pipe()

    def write() -> None:
        with os.fdopen(write_end, "wb") as out:
            for k in range(0, len(data), chunk):
                out.write(data[k : k + chunk])
                out.flush()

    writer = threading.Thread(target=write)
    writer.start()
    with os.fdopen(read_end, "rb") as stream:
        got = [space_id async for space_id in read_stream_ids(stream.fileno())]
    writer.join()
    assert got == expected


def test_progress_rate_leaves_out_spaces_never_started() -> None:
    """A snapshot's rate (and the purge.progress event) counts the spaces worked on: 90 of
    100 done that were never started (a stop) do not make the rate 100/s."""
    from smh_async import ProgressSnapshot

    snap = ProgressSnapshot(
        done=100,
        total=100,
        total_final=True,
        accepted=10,
        failed=0,
        dry_run=0,
        in_flight=0,
        elapsed_s=1.0,
        skipped=90,
    )
    assert snap.rate_per_s == 10.0
    assert snap.to_dict()["skipped"] == 90 and snap.to_dict()["rate_per_s"] == 10.0
