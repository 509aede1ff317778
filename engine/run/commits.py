"""Group commit: the identities' commits that wait together go in one transaction.

Each identity's calls are serial, each call's intent committed before it (with the writes
buffered since the last commit: the previous call's outcome and transition). Identities run
in parallel in one event loop, so while the loop runs one identity up to its next commit,
the others reach theirs: :class:`GroupCommit` takes every commit asked for in one pass of
the loop and writes them in one transaction, then wakes each identity with its intents'
keys. A call still goes only once its own intent is durable; what changes is the number of
durable commits (on PostgreSQL each is a round trip and a WAL flush): one for the
identities due together instead of one each. On SQLite each commit is written at once
(see ``GroupCommit.at_once``).

The transaction runs on the event loop: a thread per commit cost more (the hand-off, and
the GIL shared with the loop) than the round trip it hid (bench/README.md, bench_simulate
--postgres and bench_workers). If a group's transaction fails, each commit of the group is
written again alone, so one identity's error (an intent key already taken) fails only that
identity's commit.

Example::

    commits = GroupCommit(store)
    keys = await commits.commit(writes, intents)   # from each identity's task
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.run.state import Writes, write_buffered
from engine.store import Store

__all__ = ["GroupCommit"]

log = logging.getLogger(__name__)

Intents = tuple[Mapping[str, Any], ...]


@dataclass
class _Request:
    writes: Writes
    intents: Intents
    done: asyncio.Future[list[str]] = field(repr=False)


class GroupCommit:
    """Commits of buffered writes and intents, the ones asked for together in one
    transaction (see the module's docstring)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # SQLite commits at once: no round trip to share. Its WAL flush could be shared, but
        # waiting a pass of the loop for the others costs every call more than the flushes
        # it saves (tried: the visit step 1.497 -> 1.53 x the raw call, bench/README.md)
        self.at_once = store.engine.dialect.name == "sqlite"
        self._waiting: list[_Request] = []
        self.transactions = 0  # the transactions written (a group counts once)

    async def commit(self, writes: Writes, intents: Intents = ()) -> list[str]:
        """Write ``writes`` then ``intents`` (their keys returned, in order), durably, with
        the other commits asked for before the loop comes round to writing them."""
        if self.at_once:
            return self._transaction(writes, intents)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[str]] = loop.create_future()
        if not self._waiting:
            # after the tasks already woken: they may ask for their commits meanwhile
            loop.call_soon(self._write_waiting)
        self._waiting.append(_Request(writes, intents, done))
        return await done

    def _write_waiting(self) -> None:
        group, self._waiting = self._waiting, []
        try:
            self._write(group)
        except BaseException:  # a kill: nobody waits for an answer that never comes
            for request in group:
                request.done.cancel()
            raise

    def _write(self, group: list[_Request]) -> None:
        # an identity cancelled meanwhile (a stop) has its buffered outcomes written, not
        # its intents: that call will not be made
        parts = [(r, () if r.done.cancelled() else r.intents) for r in group]
        if len(parts) > 1:
            try:
                keys = self._transaction(Writes.merged([r.writes for r, _ in parts]),
                                         tuple(i for _, intents in parts for i in intents))
            except Exception:  # written again each alone below: the error is one's
                pass
            else:
                for r, intents in parts:
                    _answer(r, keys[: len(intents)])
                    keys = keys[len(intents):]
                return
        for r, intents in parts:
            try:
                _answer(r, self._transaction(r.writes, intents))
            except Exception as exc:  # the identity's task raises it
                _answer(r, exc)

    def _transaction(self, writes: Writes, intents: Intents) -> list[str]:
        self.transactions += 1
        return write_buffered(self.store, writes, intents=intents)


def _answer(request: _Request, result: list[str] | Exception) -> None:
    if request.done.cancelled():
        if isinstance(result, Exception):  # nobody waits: said here, recovery settles it
            log.warning("the buffered writes of a stopped identity were not written (%s): "
                        "their open intents are reconciled at the next start", result)
        return
    if isinstance(result, Exception):
        request.done.set_exception(result)
    else:
        request.done.set_result(result)
