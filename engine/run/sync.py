"""What the runner learns from the provider before it sends: the identity's conversations
(once per identity per tick: a conversation whose last sender is not us is a reply), its
connections, and whether an identity can go on at all (paused on a refused sync or an
expired session, resumed once the provider reports it healthy)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from engine import vocab
from engine.errors import ProviderError
from engine.model import Sequence
from engine.providers.base import ConversationSummary, Lead
from engine.run.moves import Move, Moves
from engine.run.pushed import CONNECTIONS
from engine.run.results import TickResult
from engine.run.state import IdentityTick, RunState, Stop
from engine.store import ConversationRow, EnrollmentRow, IdentityRow, LeadRow, Store

log = logging.getLogger(__name__)

_REPLY = Move("reply", detail="the lead wrote to us")
#: kv namespace: identity -> the provider's report of its last conversation sync
SYNC_REPORTS = "sync_reports"


def sync_force(sequences: Iterable[Sequence]) -> bool | None:
    """The force flag of an identity's sync from the ``spec.sync.force`` of the sequences it
    acts for: unset if none sets it, not forced only if every one says false (unset means
    forced, the adapter's default), else forced."""
    said = {s.sync_force for s in sequences}
    if said <= {None}:
        return None
    return said != {False}


def _as_buffered(ctx: IdentityTick, enr: EnrollmentRow) -> EnrollmentRow:
    """``enr`` as this wave left it: a transition earlier in the wave (a wait that elapsed)
    is buffered in ``ctx.w``, not yet in the store, and the reply must leave from there."""
    pending = ctx.w.transitions.get(enr.id)
    if pending is None:
        return enr
    return enr._replace(state=pending["state"], next_due_at=pending["next_due_at"],
                        attempts=pending["attempts"], last_error=pending["last_error"])


class Sync:
    """Conversation sync, connection checks and the pausing of identities."""

    def __init__(self, state: RunState, moves: Moves) -> None:
        self.state = state
        self.store = state.store
        self.clock = state.clock
        self.moves = moves

    async def ensure_synced(self, ctx: IdentityTick, result: TickResult) -> None:
        """Once per identity per tick: its own id (cached) and its conversations."""
        if ctx.synced:
            return
        cache = ctx.conv if ctx.conv is not None else self.state.conversation_cache(ctx.identity)
        try:
            await self._know_me(ctx)
            summaries = await self._sync(ctx)
        except ProviderError as exc:
            if exc.label == vocab.AUTH_EXPIRED:
                self.pause_identity(ctx, "AUTH_EXPIRED during the conversation sync", result)
                raise Stop from exc
            raise
        changed = [
            s
            for s in summaries
            if (old := cache.get(s.profile_url)) is None
            or old.last_sender_is_us != s.last_sender_is_us
            or old.last_activity_at != s.last_activity_at
        ]
        now = self.clock.now()
        if changed:
            self._store_changed(ctx, changed, cache)
            replied = [s.profile_url for s in changed if not s.last_sender_is_us]
            if replied:
                self.replies(ctx, replied, now, result)
        ctx.conv = cache
        ctx.synced = True
        self.state.last_sync[ctx.identity] = now
        self.state.sync_failures.pop(ctx.identity, None)

    async def _sync(self, ctx: IdentityTick) -> list[ConversationSummary]:
        """The provider's sync, with ``spec.sync.force`` when a sequence set it (lint keeps it
        to ConnectSafely); the adapter's report of it (optional, not part of the Provider
        protocol) is kept for ``seqrun status``."""
        if ctx.sync_force is None:
            summaries = await ctx.provider.sync_conversations(ctx.identity)
        else:
            summaries = await ctx.provider.sync_conversations(ctx.identity, force=ctx.sync_force)
        reporter = getattr(ctx.provider, "sync_report", None)
        report = reporter(ctx.identity) if reporter is not None else None
        if report is not None:
            self.store.kv_put(SYNC_REPORTS, ctx.identity,
                              {**report, "synced_at": self.clock.now().isoformat()})
        return summaries

    async def _know_me(self, ctx: IdentityTick) -> None:
        """The identity's own profile id, asked of the provider only once ever."""
        ident = self.state.identity_rows.get(ctx.identity)  # read at the start of the tick
        if ident is None or ident.profile_id is None:
            ident = self.store.get_identity(ctx.identity)
        if ident is None or ident.profile_id is None:
            me = await ctx.provider.me(ctx.identity)
            self.store.put_identity(ctx.identity, ctx.provider_name, profile_id=me)
        elif ident.provider == ctx.provider_name:
            # the id was read from this provider before: an adapter that can take it
            # skips its own `me` call (optional, not part of the Provider protocol)
            prime = getattr(ctx.provider, "prime_me", None)
            if prime is not None:
                prime(ctx.identity, ident.profile_id)

    def _store_changed(
        self,
        ctx: IdentityTick,
        changed: list[ConversationSummary],
        cache: dict[str, ConversationRow],
    ) -> None:
        # one executemany (the store's batched cache upsert), not a statement per row
        self.store.write_batch(
            conversations=[
                {
                    "identity": ctx.identity,
                    "profile_url": s.profile_url,
                    "last_sender_is_us": s.last_sender_is_us,
                    "last_activity_at": s.last_activity_at,
                    "first_sender_is_us": s.first_sender_is_us,
                }
                for s in changed
            ]
        )
        for s in changed:
            cache[s.profile_url] = ConversationRow(
                ctx.identity,
                s.profile_url,
                s.last_sender_is_us,
                s.last_activity_at,
                s.first_sender_is_us,
            )

    def replies(
        self, ctx: IdentityTick, urls: Iterable[str], now: datetime, result: TickResult
    ) -> None:
        """The lead wrote: every live enrollment of that lead on this identity gets ``reply``."""
        urls = list(urls)
        for i in range(0, len(urls), 500):
            chunk = urls[i : i + 500]
            for stored, lead in self.store.live_enrollments_for_profiles(ctx.identity, chunk):
                enr = _as_buffered(ctx, stored)
                if enr.state in vocab.TERMINALS:
                    continue
                compiled = self.state.compiled(enr.revision)
                if "reply" not in compiled.triggers(enr.state):
                    continue
                self.moves.transition(enr, lead, _REPLY, result, ctx=ctx)
                ctx.replied.add(enr.id)

    async def ensure_connections(self, ctx: IdentityTick) -> set[str] | None:
        """The identity's connections, once per tick, when the adapter can list them."""
        if ctx.connections is None:
            lister = getattr(ctx.provider, "connections", None)
            if lister is None:
                return None
            try:
                ctx.connections = set(await lister(ctx.identity))
            except ProviderError as exc:
                if exc.label == vocab.AUTH_EXPIRED:
                    raise
                return None
        return ctx.connections

    def _pushed_connected(self, ctx: IdentityTick, lead: LeadRow) -> bool | None:
        """From the connections a managed schedule pushed (``seqrun serve``), while fresh:
        whether the lead is connected; None when no fresh result stands in for a poll."""
        if self.state.pushed.fresh(ctx.identity, CONNECTIONS, self.clock.now()) is None:
            return None
        if ctx.links is None:
            ctx.links = self.store.connection_statuses(ctx.identity)
        return ctx.links.get(lead.profile_url) == "connected"

    async def is_connected(
        self, ctx: IdentityTick, enr: EnrollmentRow, lead: LeadRow, result: TickResult,
        *, decisive: bool = False,
    ) -> bool:
        """Whether the lead accepted. A fresh connections result of the identity's schedule
        answers without a call, except for a ``decisive`` check (a timeout would follow a
        no): that one asks the provider, so a result that is late or lost cannot cost an
        acceptance."""
        if not decisive and (pushed := self._pushed_connected(ctx, lead)) is not None:
            return pushed
        try:
            conns = await self.ensure_connections(ctx)
            if conns is not None:
                status = "connected" if lead.profile_url in conns else "unknown"
            else:
                rel = await ctx.provider.relationship(ctx.identity, Lead(lead.profile_url))
                status = rel.status
        except ProviderError as exc:
            if exc.label == vocab.AUTH_EXPIRED:
                self.pause_identity(ctx, "AUTH_EXPIRED while checking a connection", result)
                raise Stop from exc
            return False
        if status == "connected":
            ctx.w.connections.append(
                {
                    "identity": ctx.identity,
                    "profile_url": lead.profile_url,
                    "status": "connected",
                    "checked_at": self.clock.now(),
                }
            )
        return status == "connected"

    def sync_refused(self, ctx: IdentityTick, exc: ProviderError, result: TickResult) -> None:
        """The provider refused the identity's sync for good: the identity is paused (its
        leads stay where they are) until `seqrun resume --identity` after a fix."""
        reason = (
            f"{ctx.provider_name} refused the conversation sync: {exc.label}"
            f"{': ' + exc.message if exc.message else ''}"
        )
        self.pause_identity(ctx, reason, result, status="paused")
        result.errors.append(
            f"{ctx.identity}: {reason} (identity paused; `seqrun resume --identity "
            f"{ctx.identity}` once it is fixed)"
        )

    def pause_identity(
        self, ctx: IdentityTick, reason: str, result: TickResult, status: str = "auth_expired"
    ) -> None:
        """Pause the identity and all its enrollments where they are. ``auth_expired``
        resumes by itself once the provider reports the identity healthy; ``paused`` waits
        for `seqrun resume --identity`."""
        with self.store.transaction() as conn:
            pause_identity(
                self.store, ctx.identity, reason, status=status, provider=ctx.provider_name,
                at=self.clock.now(), conn=conn,
            )
        ctx.stopped = True
        result.paused_identities.append(ctx.identity)
        log.warning("identity %s paused: %s", ctx.identity, reason)

    async def resume_healthy(
        self, result: TickResult, identities: list[IdentityRow] | None = None
    ) -> None:
        """Resume the identities paused on an expired session that the provider reports
        healthy again (with all their enrollments)."""
        for ident in identities if identities is not None else self.store.list_identities():
            if ident.status != "auth_expired":
                continue
            provider = self.state.providers.get(ident.provider)
            if provider is None:
                continue
            try:
                healthy = await provider.identity_healthy(ident.id)
            except ProviderError as exc:
                log.info("health check of %s failed: %s", ident.id, exc.label)
                continue
            if not healthy:
                continue
            with self.store.transaction() as conn:
                resumed = resume_identity(self.store, ident.id, at=self.clock.now(), conn=conn)
            result.resumed_identities.append(ident.id)
            log.warning("identity %s healthy again: %d enrollments resumed", ident.id, resumed)


def pause_identity(
    store: Store,
    identity: str,
    reason: str,
    *,
    status: str,
    provider: str,
    at: datetime,
    conn: Connection,
    source: str | None = None,
) -> int:
    """Pause the identity (``status``) and its enrollments where they are, with the
    ``identity_paused`` event ``why`` shows; the number of enrollments paused."""
    store.set_identity_status(identity, status, reason, provider=provider, conn=conn)
    paused = store.set_enrollments_paused(True, identity=identity, conn=conn)
    data: dict[str, Any] = {"reason": reason, "enrollments": paused, "status": status}
    if source is not None:
        data["source"] = source
    store.record_event("identity_paused", identity, data, at=at, conn=conn)
    return paused


def resume_identity(
    store: Store, identity: str, *, at: datetime, conn: Connection, source: str | None = None
) -> int:
    """Make the identity active and resume its enrollments, with the ``identity_resumed``
    event; the number of enrollments resumed."""
    store.set_identity_status(identity, "active", None, conn=conn)
    resumed = store.set_enrollments_paused(False, identity=identity, conn=conn)
    data: dict[str, Any] = {"enrollments": resumed}
    if source is not None:
        data["source"] = source
    store.record_event("identity_resumed", identity, data, at=at, conn=conn)
    return resumed
