"""The state store under faults, through the CLI: a damaged, empty, truncated, read-only or
full store, a state directory or `-out` file that cannot be made, a store deleted or replaced
under a running `seqrun run`, and the permissions of what seqrun writes. Each fault is one
`error:` line naming the path and what to do, a non-zero exit and no traceback."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from engine.cli import main
from engine.errors import StoreError
from engine.sandbox import SandboxTransport
from engine.store import Store
from tests.conftest import invoke

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "sequences" / "founders-outreach.yaml"
SCHEDULE = ROOT / "sequences" / "edges-incremental-schedule.yaml"


def one_error(err: str, *words: str) -> str:
    """The single `error:` line of ``err`` (no traceback), which must hold ``words``."""
    lines = [line for line in err.splitlines()
             if line.strip() and not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


@pytest.fixture
def state(cli_dir: Path) -> Path:
    return cli_dir / ".seqrun"


@pytest.fixture(scope="module")
def applied_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state directory with the example applied (leads enrolled), made once."""
    state = tmp_path_factory.mktemp("applied") / ".seqrun"
    code = main(["apply", str(EXAMPLE), "--sandbox", "--virtual-clock", "--auto-approve",
                 "--no-run", "--state-dir", str(state), "-o", "json"])
    assert code == 0
    return state


@pytest.fixture
def applied(state: Path, applied_once: Path) -> Path:
    """The applied state directory copied to ``state``; its database file."""
    shutil.copytree(applied_once, state)
    return state / "state.db"


# ---- a store that is not a whole seqrun store ----------------------------------------------

COMMANDS = [
    ("status",),
    ("status", "-o", "json"),
    ("why", "https://www.linkedin.com/in/ada"),
    ("run", "--once", "--sandbox"),
    ("apply", str(EXAMPLE), "--sandbox", "--auto-approve"),
    ("plan", str(EXAMPLE), "--sandbox"),
    ("pause", "--all"),
    ("dnc", "list"),
]


@pytest.mark.parametrize("damage", ["garbage", "empty", "truncated", "torn"])
@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_a_damaged_store_is_one_error_line_for_every_command(
    state: Path, applied: Path, capsys: pytest.CaptureFixture[str], damage: str,
    argv: tuple[str, ...],
) -> None:
    db = applied
    data = db.read_bytes()
    if damage == "garbage":
        db.write_bytes(b"this is not a database\n" * 10)
    elif damage == "empty":
        db.write_bytes(b"")
    elif damage == "truncated":
        db.write_bytes(data[: len(data) // 2])
    else:  # torn: whole length, pages in the middle overwritten
        db.write_bytes(data[:4096] + b"\x07" * (len(data) - 4096))
    code, _, err = invoke(capsys, *argv, "--state-dir", str(state))
    assert code == 1
    one_error(err, str(db), "restore it from a backup")
    expected = {"garbage": "not a seqrun store", "empty": "empty (0 bytes)",
                "truncated": "truncated", "torn": "damaged"}[damage]
    assert expected in err
    assert db.stat().st_size == (0 if damage == "empty" else db.stat().st_size)  # untouched


def test_an_empty_store_file_is_not_taken_for_a_new_store(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state.mkdir()
    (state / "state.db").touch()
    code, _, err = invoke(capsys, "status", "--state-dir", str(state))
    assert code == 1 and "empty (0 bytes)" in err
    assert (state / "state.db").stat().st_size == 0  # not made into a store behind our back


def _drop_sandbox_db(state: Path) -> Path:
    for name in ("sandbox.db", "sandbox.db-wal", "sandbox.db-shm"):
        (state / name).unlink(missing_ok=True)
    return state / "sandbox.db"


@pytest.mark.parametrize("saved", ['{"clock": nul', "{}", "[]", '{"clock": null, "world": 1}'])
def test_a_damaged_older_sandbox_state_is_one_error_line(
    state: Path, applied: Path, capsys: pytest.CaptureFixture[str], saved: str
) -> None:
    _drop_sandbox_db(state)
    (state / "sandbox.json").write_text(saved)  # an earlier version's saved world
    code, _, err = invoke(capsys, "run", "--once", "--sandbox", "--state-dir", str(state))
    assert code == 1
    one_error(err, f"the sandbox state {state / 'sandbox.json'} is damaged", "restore it")


def test_a_damaged_sandbox_database_is_one_error_line(
    state: Path, applied: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _drop_sandbox_db(state).write_bytes(b"this is not a database " * 200)
    code, _, err = invoke(capsys, "run", "--once", "--sandbox", "--state-dir", str(state))
    assert code == 1
    one_error(err, f"the sandbox state {state / 'sandbox.db'} is damaged", "restore it")


def test_a_sandbox_state_that_cannot_be_read(
    state: Path, applied: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _drop_sandbox_db(state).mkdir()
    code, _, err = invoke(capsys, "run", "--once", "--sandbox", "--state-dir", str(state))
    assert code == 1
    one_error(err, f"the sandbox state {state / 'sandbox.db'}")


def test_an_unreachable_database_is_one_error_line_without_its_password(
    cli_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql+psycopg://seqrun:pw-FAKE-SECRET-99@127.0.0.1:{port}/seqrun"
    monkeypatch.setenv("SEQRUN_DATABASE_URL", url)
    code, _, err = invoke(capsys, "status")
    assert code == 1
    line = one_error(err, f"postgresql+psycopg://seqrun:***@127.0.0.1:{port}/seqrun",
                     "check that the database is reachable")
    assert "FAKE-SECRET" not in line


# ---- directories and files that cannot be made ---------------------------------------------


def test_a_state_dir_that_cannot_be_created(
    cli_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (cli_dir / "a-file").write_text("x")
    bad = cli_dir / "a-file" / "state"
    # a command that writes (status reads, and makes no state directory)
    code, _, err = invoke(capsys, "dnc", "add", "https://www.linkedin.com/in/ada",
                          "--state-dir", str(bad))
    assert code == 1
    one_error(err, f"cannot create the state directory {bad}", "Not a directory", "--state-dir")


def test_a_plan_out_file_that_cannot_be_created(
    cli_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = cli_dir / "no-such-dir" / "plan.json"
    code, _, err = invoke(capsys, "plan", str(SCHEDULE), "--sandbox", "-out", str(out))
    assert code == 1
    one_error(err, f"cannot write the plan to {out}", "No such file or directory")
    assert not out.exists()


# ---- read-only and full ---------------------------------------------------------------------


@pytest.fixture
def sqlite_pragma() -> Iterator[Callable[[str], None]]:
    """Run a PRAGMA on every SQLite connection opened meanwhile: SQLite itself then refuses
    writes (``query_only``: SQLITE_READONLY, as for a read-only file) or growth
    (``max_page_count``: SQLITE_FULL, as on a full disk)."""
    pragmas: list[str] = []

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        if isinstance(dbapi_conn, sqlite3.Connection):
            for pragma in pragmas:
                if pragma == "full":  # no page beyond those the file has now
                    pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
                    dbapi_conn.execute(f"PRAGMA max_page_count = {pages}")
                else:
                    dbapi_conn.execute(f"PRAGMA {pragma}")

    sa.event.listen(sa.engine.Engine, "connect", on_connect)
    try:
        yield pragmas.append
    finally:
        sa.event.remove(sa.engine.Engine, "connect", on_connect)


def test_a_read_only_store(
    state: Path, applied: Path, capsys: pytest.CaptureFixture[str],
    sqlite_pragma: Callable[[str], None],
) -> None:
    db = applied
    sqlite_pragma("query_only = ON")
    code, _, err = invoke(capsys, "run", "--once", "--sandbox", "--state-dir", str(state))
    assert code == 1
    one_error(err, str(db), "is read-only", "make it and its directory writable")


def test_a_full_disk(
    state: Path, applied: Path, capsys: pytest.CaptureFixture[str],
    sqlite_pragma: Callable[[str], None],
) -> None:
    rows = ["linkedin_profile_url,full_name,company"] + [
        f"https://www.linkedin.com/in/lead-{i:05d},Lead {i},{'Company ' * 20}{i}"
        for i in range(3000)]
    (state.parent / "more.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    sqlite_pragma("full")
    code, _, err = invoke(capsys, "leads", "import", "more.csv", "--sequence",
                          "founders-outreach", "--state-dir", str(state))
    assert code == 1
    one_error(err, str(state / "state.db"), "the disk is full", "free some space")


# ---- a store deleted or replaced under a running `seqrun run` -------------------------------


@pytest.fixture
def after_calls(monkeypatch: pytest.MonkeyPatch) -> Callable[[int, Callable[[], None]], None]:
    """Do something (delete the state directory...) once the sandbox has answered N calls:
    the moment lands inside a run, between its provider calls."""

    def arrange(n: int, action: Callable[[], None]) -> None:
        real = SandboxTransport.handle_async_request
        seen = 0

        async def counting(self: SandboxTransport, request: httpx.Request) -> httpx.Response:
            nonlocal seen
            response = await real(self, request)
            seen += 1
            if seen == n:
                action()
            return response

        monkeypatch.setattr(SandboxTransport, "handle_async_request", counting)

    return arrange


def _run_30_days(state: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code, _, err = invoke(capsys, "run", "--sandbox", "--virtual-clock", "--until", "+30d",
                          "--state-dir", str(state))
    return code, err


def test_a_state_dir_deleted_mid_run_stops_the_run(
    state: Path, applied: Path, capsys: pytest.CaptureFixture[str],
    after_calls: Callable[[int, Callable[[], None]], None],
) -> None:
    after_calls(3, lambda: shutil.rmtree(state))
    code, err = _run_30_days(state, capsys)
    assert code == 1
    assert "was deleted or replaced while this process was using it" in err
    assert "Traceback" not in err and "0 failed" not in err
    assert not state.exists()  # not recreated empty


def test_a_state_dir_deleted_under_the_daemon_stops_it(
    state: Path, applied: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The daemon (real clock) ticks whether or not anything is due: its store is deleted
    after its 6th commit (the lock taken, a tick's reads). Before, it went on for the whole
    --until on a store nobody would ever see again."""
    commits = 0

    def on_commit(_conn: Any) -> None:
        nonlocal commits
        commits += 1
        if commits == 6:
            shutil.rmtree(state)

    sa.event.listen(sa.engine.Engine, "commit", on_commit)
    try:
        code, _, err = invoke(capsys, "run", "--sandbox", "--until", "+1m", "--poll-interval",
                              "0.05", "--state-dir", str(state))
    finally:
        sa.event.remove(sa.engine.Engine, "commit", on_commit)
    assert commits >= 6
    assert code == 1 and "was deleted or replaced" in err
    assert not state.exists()


def test_a_store_replaced_mid_run_stops_the_run(
    state: Path, applied: Path, cli_dir: Path, capsys: pytest.CaptureFixture[str],
    after_calls: Callable[[int, Callable[[], None]], None],
) -> None:
    Store.open(None, cli_dir / "other").close()

    def replace() -> None:  # another state directory put in its place (a restore, say)
        shutil.rmtree(state)
        os.replace(cli_dir / "other", state)

    after_calls(3, replace)
    code, err = _run_30_days(state, capsys)
    assert code == 1 and "was deleted or replaced" in err
    other = Store.open(None, state)  # nothing of the run was written into the replacement
    try:
        assert other.list_sequences() == [] and other.pending_intents() == []
    finally:
        other.close()


def test_a_store_overwritten_in_place_is_told_by_its_id(
    state: Path, applied: Path, cli_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Copied over (same inode): the next connection reads another store's id."""
    db = applied
    store = Store.open(None, state)
    try:
        store.kv_get("any", "thing")
        store.engine.dispose()  # between two connections of the pool
        Store.open(None, cli_dir / "other").close()
        shutil.copyfile(cli_dir / "other" / "state.db", db)
        with pytest.raises(StoreError, match="was replaced by another store"):
            store.kv_put("any", "thing", 1)
    finally:
        store.close()
    copied = Store.open(None, state)
    try:
        assert copied.kv_get("any", "thing") is None  # the write was refused, not misplaced
    finally:
        copied.close()


# ---- permissions ----------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_state_dir_and_database_are_owner_only(
    state: Path, applied: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = os.umask(0o022)
    try:
        db = applied
        store = Store.open(None, state)  # an open store has its -wal and -shm
        try:
            store.kv_put("k", "v", 1)
            sidecars = [Path(f"{db}{s}") for s in ("-wal", "-shm")]
            assert all(p.exists() for p in sidecars)
            assert [_mode(p) for p in sidecars] == [0o600, 0o600]
        finally:
            store.close()
    finally:
        os.umask(old)
    assert _mode(state) == 0o700
    assert _mode(db) == 0o600
    assert [p.name for p in state.iterdir() if _mode(p) & 0o077] == []


def test_a_kept_simulation_is_owner_only(cli_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keep = cli_dir / "kept"
    code, _, err = invoke(capsys, "simulate", str(EXAMPLE), "--until", "+1d", "--keep", str(keep))
    assert code == 0, err
    assert _mode(keep) == 0o700
    assert [p.name for p in keep.iterdir() if _mode(p) & 0o077] == []


def test_a_store_left_world_readable_is_made_owner_only(
    state: Path, applied: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = applied
    db.chmod(0o644)
    assert invoke(capsys, "status", "--state-dir", str(state))[0] == 0
    assert _mode(db) == 0o600


def test_a_saved_plan_is_owner_only(cli_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = cli_dir / "plan.json"
    out.write_text("{}")
    out.chmod(0o644)  # an existing file is made owner-only too
    code, _, err = invoke(capsys, "plan", str(SCHEDULE), "--sandbox", "-out", str(out))
    assert code == 0, err
    assert _mode(out) == 0o600
