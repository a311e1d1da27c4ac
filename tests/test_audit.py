"""The audit trail: a chain every edit, deletion, reordering or cut breaks, named by line (issue 12)."""

from __future__ import annotations

import json
import multiprocessing
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from cim.audit import AuditLog, AuditWriter, burst_records, parse_time
from cim.cli.main import cli


@pytest.fixture
def city(tmp_path) -> Path:
    (tmp_path / "city.json").write_text(json.dumps({"name": "t", "layers": [{"id": "bim", "url": "bim/tileset.json"}]}))
    return tmp_path


def fill(city: Path, n: int = 10) -> AuditLog:
    log = AuditLog(city)
    log.append(
        *(
            {"user": f"u{i % 3}", "action": "search" if i % 2 else "login", "target": "/api/x", "status": 200, "detail": {"i": i}}
            for i in range(n)
        )
    )
    return log


def lines(log: AuditLog) -> list[str]:
    return log.path.read_text("utf-8").splitlines(keepends=True)


def problems(log: AuditLog) -> list[str]:
    return [str(p) for p in log.verify().problems]


def test_an_untouched_log_verifies(city):
    log = fill(city, 10)
    fill(city, 5)  # a second writer continues the same chain
    result = log.verify()
    assert result.ok and result.records == 15
    seqs = [json.loads(line)["seq"] for line in lines(log)]
    assert seqs == list(range(1, 16))


def test_an_edited_record_is_named(city):
    log = fill(city)
    text = lines(log)
    record = json.loads(text[3])
    record["user"] = "someone else"
    text[3] = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
    log.path.write_text("".join(text), "utf-8")
    assert problems(log) == ["line 4 (record 4): its content does not match its MAC: the record was edited"]


def test_a_deleted_record_is_named(city):
    log = fill(city)
    text = lines(log)
    del text[4:6]
    log.path.write_text("".join(text), "utf-8")
    assert problems(log) == ["line 5 (record 7): records 5-6 missing before it: deleted"]


def test_reordered_records_are_named(city):
    log = fill(city)
    text = lines(log)
    text[2], text[3] = text[3], text[2]
    log.path.write_text("".join(text), "utf-8")
    found = problems(log)
    assert found[0] == "line 3 (record 4): record 3 missing before it: deleted"
    assert "line 4 (record 3): out of order (expected record 5 here): reordered or copied" in found


def test_a_log_cut_short_is_caught_by_its_head(city):
    log = fill(city)
    log.path.write_text("".join(lines(log)[:7]), "utf-8")
    assert problems(log) == ["line 8 (record 10): the last 3 record(s) are missing: the log was cut short"]


def test_a_forged_chain_without_the_key_fails(city):
    """Recomputing a plain hash chain after an edit is easy; the MAC needs the city's key."""
    import hashlib

    log = fill(city, 3)
    text = [json.loads(line) for line in lines(log)]
    text[1]["user"] = "forger"
    prev = text[0]["mac"]
    for record in text[1:]:
        record["prev"] = prev
        record["mac"] = prev = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
    log.path.write_text("".join(json.dumps(r) + "\n" for r in text), "utf-8")
    assert any("edited" in p for p in problems(log))


def test_garbage_lines_are_reported(city):
    log = fill(city, 3)
    log.path.write_text(log.path.read_text() + "not json\n", "utf-8")
    assert "line 4: not an audit record (damaged or inserted)" in problems(log)


def _append_many(city: str, who: str) -> None:
    log = AuditLog(city)
    for i in range(40):
        log.append({"user": who, "action": "read", "detail": {"i": i}})


def test_processes_appending_at_once_keep_one_chain(city):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(city), f"p{k}")) for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    result = AuditLog(city).verify()
    assert result.ok and result.records == 120, [str(p) for p in result.problems]


def test_the_writer_thread_writes_everything_queued(city):
    writer = AuditWriter(AuditLog(city), batch=7)
    for i in range(100):
        writer.record(user="w", action="read", detail={"i": i})
    assert writer.flush(10.0)
    writer.close()
    records = list(AuditLog(city).show())
    assert [r["detail"]["i"] for r in records] == list(range(100))


def test_show_filters_by_user_action_and_time(city):
    log = AuditLog(city)
    log.append(
        {"user": "wang", "action": "login", "time": "2026-12-01T08:00:00.000000Z"},
        {"user": "wang", "action": "search", "time": "2026-12-02T08:00:00.000000Z"},
        {"user": "li", "action": "search", "time": "2026-12-03T08:00:00.000000Z"},
    )
    assert [r["seq"] for r in log.show(user="wang")] == [1, 2]
    assert [r["seq"] for r in log.show(action="search")] == [2, 3]
    assert [r["seq"] for r in log.show(since=parse_time("2026-12-02"), until=parse_time("2026-12-03T08:00Z"))] == [2]
    assert parse_time("2026-12-02T16:00+08:00") == datetime(2026, 12, 2, 8, tzinfo=UTC)


def test_cli_verify_names_the_tampered_record_and_fails(city):
    log = fill(city)
    runner = CliRunner()
    ok = runner.invoke(cli, ["audit", "verify", str(city)])
    assert ok.exit_code == 0 and "10 records, chain intact" in ok.output
    text = lines(log)
    del text[2]
    log.path.write_text("".join(text), "utf-8")
    bad = runner.invoke(cli, ["audit", "verify", str(city)])
    assert bad.exit_code == 1
    assert "line 3 (record 4): record 3 missing before it: deleted" in bad.output
    shown = runner.invoke(cli, ["audit", "show", str(city), "--user", "u1", "--json"])
    assert shown.exit_code == 0
    assert {json.loads(line)["user"] for line in shown.output.splitlines()} == {"u1"}
    missing = runner.invoke(cli, ["audit", "verify", str(city / "nowhere")])
    assert missing.exit_code != 0 and "Traceback" not in missing.output


def test_cli_users_and_access(city):
    runner = CliRunner()
    added = runner.invoke(
        cli, ["users", "add", str(city), "wang", "--role", "planner", "--password-stdin", "--token"], input="a long passphrase\n"
    )
    assert added.exit_code == 0, added.output
    token = added.output.strip().splitlines()[-1]
    assert token.startswith("cim_")
    again = runner.invoke(cli, ["users", "add", str(city), "wang", "--role", "planner", "--no-password"])
    assert again.exit_code == 1 and "exists already" in again.output
    short = runner.invoke(cli, ["users", "add", str(city), "li", "--role", "x", "--password-stdin"], input="short\n")
    assert short.exit_code == 1 and "at least 8 characters" in short.output
    listed = runner.invoke(cli, ["users", "list", str(city), "--json"])
    assert json.loads(listed.output.splitlines()[0]) == {"name": "wang", "role": "planner", "active": True, "password": True, "tokens": 1}
    assert runner.invoke(cli, ["access", "restrict", str(city), "bim", "--role", "planner"]).exit_code == 0
    unknown = runner.invoke(cli, ["access", "restrict", str(city), "nope", "--role", "planner"])
    assert unknown.exit_code == 2 and "no layer 'nope'" in unknown.output
    shown = runner.invoke(cli, ["access", "show", str(city)])
    assert "bim: roles admin, planner" in shown.output and "anonymous reading: on" in shown.output
    revoked = runner.invoke(cli, ["users", "revoke", str(city), "wang"])
    assert revoked.exit_code == 0 and "1 token(s) deleted" in revoked.output
    listed = runner.invoke(cli, ["users", "list", str(city), "--json"])
    assert json.loads(listed.output.splitlines()[0])["active"] is False


# ---------------------------------------------------------------------- reads in bursts


def read_records(city: Path) -> list[dict]:
    log = AuditLog(city)
    return list(log.show(action="read")) if log.path.is_file() else []


def test_a_burst_of_reads_is_fewer_records_listing_every_path(city):
    writer = AuditWriter(AuditLog(city), interval=60.0)  # one turn: the flush below
    paths = [f"/city/bim/t/{i}.glb" for i in range(50)]
    for path in paths:
        writer.read("wang", "bim", path, "127.0.0.1", 200)
    writer.read("wang", "bim", paths[7], "127.0.0.1", 200)  # read again
    writer.read("li", "bim", paths[0], "127.0.0.1", 200)  # another reader: another record
    writer.record(user="wang", action="search", target="/api/search", status=200, detail={"q": "x"})
    assert writer.flush(10.0)
    writer.close()
    records = list(AuditLog(city).show())
    assert [(r["user"], r["action"]) for r in records] == [("wang", "read"), ("li", "read"), ("wang", "search")]
    burst = records[0]
    assert burst["detail"]["paths"] == paths and burst["detail"]["count"] == 51 and burst["detail"]["repeats"] == {paths[7]: 2}
    assert burst["target"] == paths[0] and burst["remote"] == "127.0.0.1" and burst["status"] == 200 and burst["detail"]["layer"] == "bim"
    assert parse_time(burst["time"]) <= parse_time(burst["detail"]["last"])
    assert records[1]["detail"]["paths"] == [paths[0]] and records[1]["detail"]["count"] == 1
    assert AuditLog(city).verify().ok


def test_a_read_after_the_window_starts_a_new_record(city):
    writer = AuditWriter(AuditLog(city), interval=0.05)
    writer.read("wang", "bim", "/city/bim/a.glb", "127.0.0.1", 200)
    deadline = time.monotonic() + 10
    while not read_records(city) and time.monotonic() < deadline:  # the writer's turn, not a flush, wrote it
        time.sleep(0.02)
    writer.read("wang", "bim", "/city/bim/b.glb", "127.0.0.1", 200)
    writer.close()
    assert [r["detail"]["paths"] for r in read_records(city)] == [["/city/bim/a.glb"], ["/city/bim/b.glb"]]


def test_burst_records_split_by_reader_status_and_size():
    order = [0, 1, 0, 2, 3, 4, 4, 3]  # with at most 3 paths a record: 3 starts the second
    reads = [(1.0 + i, "wang", "bim", f"/city/bim/{n}.glb", "10.0.0.1", 200) for i, n in enumerate(order)]
    reads.append((20.0, "wang", "bim", "/city/bim/9.glb", "10.0.0.1", 304))
    reads.append((21.0, "wang", "bim", "/city/bim/9.glb", "10.0.0.2", 200))
    reads.insert(3, (3.5, {"user": "wang", "action": "search"}))
    records = burst_records(reads, max_paths=3)
    assert [r["action"] for r in records] == ["read", "search", "read", "read", "read"]  # in the order of their first item
    records = [r for r in records if r["action"] == "read"]
    assert [r["detail"]["paths"] for r in records] == [
        ["/city/bim/0.glb", "/city/bim/1.glb", "/city/bim/2.glb"],
        ["/city/bim/3.glb", "/city/bim/4.glb"],
        ["/city/bim/9.glb"],
        ["/city/bim/9.glb"],
    ]
    assert [r["detail"]["count"] for r in records] == [4, 4, 1, 1]
    assert [r["detail"].get("repeats") for r in records] == [
        {"/city/bim/0.glb": 2},
        {"/city/bim/3.glb": 2, "/city/bim/4.glb": 2},
        None,
        None,
    ]
    assert [(r["status"], r["remote"]) for r in records[2:]] == [(304, "10.0.0.1"), (200, "10.0.0.2")]
    assert (records[0]["time"], records[0]["detail"]["last"]) == ("1970-01-01T00:00:01.000000Z", "1970-01-01T00:00:04.000000Z")
    assert records[1]["time"] == "1970-01-01T00:00:05.000000Z"


def test_a_tampered_burst_record_is_named(city):
    writer = AuditWriter(AuditLog(city), interval=60.0)
    writer.record(user="wang", action="login", status=200)
    for i in range(10):
        writer.read("wang", "bim", f"/city/bim/{i}.glb", "127.0.0.1", 200)
    writer.record(user="wang", action="logout", status=200)
    writer.close()
    log = AuditLog(city)
    assert log.verify().ok
    text = lines(log)
    record = json.loads(text[1])
    record["detail"]["paths"].remove("/city/bim/3.glb")  # hide one read of the burst
    record["detail"]["count"] -= 1
    text[1] = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
    log.path.write_text("".join(text), "utf-8")
    assert problems(log) == ["line 2 (record 2): its content does not match its MAC: the record was edited"]


def test_close_writes_every_queued_read(city):
    """Nothing is lost when the writer stops between two of its turns."""
    writer = AuditWriter(AuditLog(city), interval=3600.0)
    for i in range(300):
        writer.read(f"u{i % 2}", "bim", f"/city/bim/{i}.glb", "127.0.0.1", 200)
    writer.close()
    records = read_records(city)
    assert len(records) == 2
    paths = [p for r in records for p in r["detail"]["paths"]]
    assert sorted(paths) == sorted(f"/city/bim/{i}.glb" for i in range(300))


def test_show_and_the_cli_find_a_path_inside_a_burst(city):
    writer = AuditWriter(AuditLog(city), interval=60.0)
    for i in range(5):
        writer.read("wang", "bim", f"/city/bim/{i}.glb", "127.0.0.1", 200)
    writer.record(user="li", action="read-denied", target="/city/bim/3.glb", status=403, detail={"layer": "bim"})
    writer.record(user="li", action="search", target="/api/search", status=200)
    writer.close()
    assert [r["action"] for r in AuditLog(city).show(path="/city/bim/3.glb")] == ["read", "read-denied"]
    assert list(AuditLog(city).show(path="/city/bim/9.glb")) == []
    shown = CliRunner().invoke(cli, ["audit", "show", str(city), "--path", "/city/bim/3.glb", "--json"])
    assert shown.exit_code == 0, shown.output
    assert [json.loads(line)["user"] for line in shown.output.splitlines()] == ["wang", "li"]


def test_a_record_json_cannot_hold_is_reported_and_the_trail_goes_on(city, caplog):
    writer = AuditWriter(AuditLog(city), interval=60.0)
    writer.record(user="w", action="search", detail={"q": object()})
    assert not writer.flush(0.5)  # not on disk: flush says so
    writer.record(user="w", action="search", detail={"q": "x"})
    assert writer.flush(10.0)
    writer.close()
    assert [r["detail"] for r in AuditLog(city).show()] == [{"q": "x"}]
    assert "could not be written and are dropped" in caplog.text
