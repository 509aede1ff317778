"""Shared fixtures. Any real network access fails loudly."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import settings

from engine.cli import main
from engine.sandbox.world import WorldConfig
from engine.store import Store

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
# CI clones the project with shared/ beside it; elsewhere the byte-identical copies in
# sequences/ stand in (tests/test_e2e_examples.py checks that they match when both exist).
SHARED_EXAMPLES = SHARED / "examples" if (SHARED / "examples").is_dir() else ROOT / "sequences"
SEEDS = SHARED / "seeds"
PG_URL = os.environ.get("SEQRUN_TEST_DATABASE_URL")  # CI sets it (.ci/postgres.sh)

# The suite (and so CI) draws the same examples every run: a fuzz find must not fail a landing
# at random. `--hypothesis-profile=fuzz` draws new examples on every run, to hunt for more.
settings.register_profile("default", derandomize=True, print_blob=True)
settings.register_profile("fuzz", derandomize=False, max_examples=1000, print_blob=True)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else str(address)
        if isinstance(address, tuple) and host not in ("127.0.0.1", "localhost", "::1"):
            raise RuntimeError(f"network access in a test: {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield


def invoke(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``seqrun ARGV...`` in this process: its exit code, stdout and stderr."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def cli_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch working directory for CLI tests: the default store (``.seqrun`` here, not
    ``$SEQRUN_DATABASE_URL``) and a stdin that is not a terminal (no prompt is answered)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEQRUN_DATABASE_URL", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    return tmp_path


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh SQLite store in the test's directory (tests/test_store.py runs its own on
    PostgreSQL too)."""
    opened = Store.open(None, tmp_path / ".seqrun")
    yield opened
    opened.close()



@contextlib.contextmanager
def postgres_schema(prefix: str = "t") -> Iterator[str]:
    """A store URL on the test PostgreSQL in a schema of its own, dropped afterwards (the
    test is skipped without SEQRUN_TEST_DATABASE_URL): tests in parallel never collide."""
    if not PG_URL:
        pytest.skip("SEQRUN_TEST_DATABASE_URL not set")
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A store on SQLite, then on PostgreSQL in a schema of its own (skipped without a
    server): the store tests run on both databases."""
    if request.param == "sqlite":
        s = Store.open(None, tmp_path / "sqlite")
    else:
        s = Store.open(request.getfixturevalue("pg_url"), tmp_path)
    yield s
    s.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A store URL on the test PostgreSQL in a schema of its own (skipped without one)."""
    with postgres_schema() as url:
        yield url


def quiet_config(**overrides: Any) -> WorldConfig:
    """A sandbox world where nobody is connected or writes first before a test acts and every
    profile is accessible: what a test sets up is all there is."""
    base: dict[str, Any] = {"already_connected_fraction": 0.0, "writes_first_fraction": 0.0,
                            "inaccessible_fraction": 0.0}
    return WorldConfig(**{**base, **overrides})
