"""The Edges list actions (search, connections, invitations, conversations, messages), their
cursors and incremental watermarks."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from engine.sandbox.common import iso, parse_iso
from engine.sandbox.edges.actions import Actions
from engine.sandbox.edges.errors import EdgesError
from engine.sandbox.edges.wire import (
    CURSOR_TTL,
    INCREMENTAL,
)
from engine.sandbox.world import (
    IdentityState,
    Invitation,
    Profile,
    Thread,
    WorldError,
)


class Lists(Actions):
    """Items of the list actions, unrendered, and how to render one.

    An incremental list returns the items written inside a window of the world's write
    numbers (see ``World.write_mark``): after ``since`` (the previous call's upper bound, or
    None: from the start) and up to ``upto`` (the world's mark when the list was taken, or
    None: no bound). Times cannot be the watermark: many writes share one virtual instant."""

    def _list(self, action: str, ident: IdentityState | None, input: dict[str, Any],
              params: dict[str, Any], since: int | None = None, upto: int | None = None, *,
              inbox: bool = False) -> list[dict[str, Any]]:
        """Every item of a list action (newest first), only those written in the window."""
        raw, render = self._list_raw(action, ident, input, params, since, upto, inbox=inbox)
        return [render(x) for x in raw]

    def _list_raw(self, action: str, ident: IdentityState | None, input: dict[str, Any],
                  params: dict[str, Any], since: int | None = None, upto: int | None = None,
                  *, inbox: bool = False,
                  ) -> tuple[list[Any], Callable[[Any], dict[str, Any]]]:
        """The items of a list action unrendered, and how to render one (so that a live page
        renders only its own 20 or 40 items)."""
        w = self.world
        if action == "linkedin-search-people":
            return self._search_raw(ident, input, params)
        assert ident is not None
        window = _Window(since, upto)
        if action == "linkedin-extract-connections":
            def connection(item: tuple[Profile, datetime]) -> dict[str, Any]:
                p, at = item
                return {**self._profile_out(p), "connected_at": iso(at),
                        "profile_image_url": None}

            conns = w.connections(ident.uid)
            if window.bounded:
                conns = [c for c in conns if window.holds(w.connection_seq(ident.uid, c[0].url))]
            return conns, connection
        if action == "linkedin-extract-sent-invitations":  # inferred shape
            def invitation(i: Invitation) -> dict[str, Any]:
                return {**self._profile_out(w.profiles[i.profile_url]),
                        "sent_at": iso(i.sent_at), "created_at": iso(i.sent_at),
                        "message": i.note or ""}

            return w.pending_invitations(ident.uid), invitation
        if action == "linkedin-extract-conversations":
            only_unread = params.get("read") is False
            threads = [t for t in w.conversations(ident.uid)
                       if (not window.bounded or any(window.holds(m.seq) for m in t.messages))
                       and (not only_unread or t.unread_count > 0)]
            return threads, lambda t: self._conversation_out(ident, t)
        if action == "linkedin-extract-messages":
            return self._messages_raw(ident, input, window, inbox=inbox)
        raise EdgesError("NOT_FOUND", f"unknown action {action!r}")

    def _mark(self, raw: object) -> int | None:
        """A watermark as kept (in a run, the live marks, a cursor): a write number, None, or
        (kept before the write numbers) the ISO time of the previous list: every item dated
        at or after it is new (see ``World.writes_before``); one may come twice, none is
        missed."""
        if raw is None or isinstance(raw, int):
            return raw
        return self.world.writes_before(parse_iso(str(raw)))

    def _search_raw(self, ident: IdentityState | None, input: dict[str, Any],
                    params: dict[str, Any],
                    ) -> tuple[list[Any], Callable[[Any], dict[str, Any]]]:
        w = self.world
        url = input.get("linkedin_people_search_url")
        if not isinstance(url, str) or not url:
            raise EdgesError("BAD_INPUT",
                             "input must have required property 'linkedin_people_search_url'")
        facets = parse_qs(urlsplit(url).query)
        query = facets.get("keywords", [""])[0]
        limit = int(params.get("max_results") or 1000)
        if ident is not None:
            found = w.search_people(query, len(w.profiles) + 1, identity=ident.uid)
        else:
            found = w.search_people(query, len(w.profiles) + 1)
        network = w.network[ident.uid] if ident is not None else {}
        found = [p for p in found if _facets_match(p, facets, p.url in network)][:limit]

        def person(p: Profile) -> dict[str, Any]:
            return {**self._profile_out(p),
                    "connection_degree": "1st" if p.url in network else "2nd"}

        return found, person

    def _messages_raw(self, ident: IdentityState, input: dict[str, Any],
                      window: _Window, *, inbox: bool,
                      ) -> tuple[list[Any], Callable[[Any], dict[str, Any]]]:
        """The messages of one thread, newest first, or with ``inbox`` (async and schedule
        runs) and no thread reference an inbox sync: the identity's messages across all its
        conversations, newest first; only those written in the incremental ``window``.
        *Inferred*: the docs show the action with a thread input only, yet a Schedule of it
        with no ``inputs`` (``sequences/inbox-sync.yaml``, seed 000's inbox sync) is the
        documented use; a live run without a thread stays ``BAD_INPUT``."""
        ref = (input.get("linkedin_thread_url") or input.get("linkedin_conversation_url")
               or input.get("linkedin_thread_id") or input.get("conversation_id"))
        if not ref and inbox:
            mail = [(t, i, m) for t in self.world.conversations(ident.uid)
                    for i, m in enumerate(t.messages) if window.holds(m.seq)]
            mail.sort(key=lambda tim: (tim[2].created_at, tim[2].message_id), reverse=True)
            return mail, lambda tim: self._message_out(ident, tim[0], tim[2], tim[1])
        if not isinstance(ref, str) or not ref:
            raise EdgesError("BAD_INPUT",
                             "input must have required property 'linkedin_thread_url'")
        thread = self._resolve_thread(ident, ref)
        msgs = [(i, m) for i, m in enumerate(thread.messages) if window.holds(m.seq)]
        msgs.reverse()
        return msgs, lambda im: self._message_out(ident, thread, im[1], im[0])

    def _resolve_thread(self, ident: IdentityState, ref: str) -> Thread:
        w = self.world
        try:
            return w.thread(ident.uid, ref)
        except WorldError:
            pass
        # a profile (URL or id) instead of a thread: its conversation, if any
        profile = w.profile_by_id(ref) if "/" not in ref else None
        url = profile.url if profile else ref
        try:
            found = w.thread_with(ident.uid, url)
        except WorldError:
            found = None
        if found is None or not found.messages:
            raise EdgesError("BAD_INPUT", f"conversation not found: {ref}")
        return found

    def _check_sync_mode(self, action: str, ident: IdentityState | None,
                         params: Mapping[str, Any]) -> bool:
        """Whether the call is incremental; refuses a bad ``sync_mode`` or ``max_results``
        (every run mode checks its parameters here, before a run is queued)."""
        cap = params.get("max_results")
        if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool)
                                or not 1 <= cap <= 100_000):
            raise EdgesError("BAD_PARAMETERS",
                             "parameters/max_results must be an integer from 1 to 100000")
        mode = params.get("sync_mode")
        if mode in (None, "full"):
            return False
        if mode != "incremental":
            raise EdgesError("BAD_PARAMETERS",
                             "parameters/sync_mode must be equal to one of the allowed values")
        if action not in INCREMENTAL:
            raise EdgesError("BAD_PARAMETERS", f"{action} does not support sync_mode")
        if ident is None or ident.type != "engagement":
            raise EdgesError("BAD_PARAMETERS",
                             "sync_mode incremental requires an Engagement Identity "
                             "(type: engagement)")
        return True

    def _cursor(self, offset: int, since: int | None = None, upto: int | None = None) -> str:
        """The next page's cursor: its offset and the incremental window of the first page
        (so that writes made while the client pages neither shift nor join the list)."""
        raw = json.dumps({"o": offset, "s": since, "u": upto, "t": iso(self.world.now)},
                         separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    def _uncursor(self, cursor: str) -> tuple[int, int | None, int | None]:
        """Offset and window of a cursor; one made before the write numbers has a time as
        ``s`` and no ``u``."""
        try:
            raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            offset, made = int(raw["o"]), parse_iso(raw["t"])
            since, upto = raw.get("s"), raw.get("u")
            if not (upto is None or isinstance(upto, int)):
                raise TypeError("u")
        except (ValueError, KeyError, TypeError) as exc:
            raise EdgesError("BAD_PARAMETERS", "invalid cursor") from exc
        if self.world.now - made > CURSOR_TTL:
            raise EdgesError("BAD_PARAMETERS", "cursor expired (24 h)")
        try:
            return offset, self._mark(since), upto
        except ValueError as exc:
            raise EdgesError("BAD_PARAMETERS", "invalid cursor") from exc

    @staticmethod
    def _watermark_key(scope: str, uid: str, action: str, input: Mapping[str, Any]) -> str:
        ref = (input.get("linkedin_thread_url") or input.get("linkedin_conversation_url")
               or input.get("linkedin_thread_id") or input.get("conversation_id") or "")
        return f"{scope}|{uid}|{action}|{ref}"


def _facets_match(p: Profile, facets: Mapping[str, list[str]], first: bool) -> bool:
    """LinkedIn's people-search URL facets beyond ``keywords``: ``titleFreeText`` (each of
    its words a word of the job title) and ``company`` (contained), any case, and
    ``network`` (``["F","S","O"]``: 1st, 2nd, 3rd+; the sandbox's people outside the
    network are all 2nd)."""
    title = facets.get("titleFreeText", [""])[0].lower().split()
    company = facets.get("company", [""])[0].lower()
    if title and not set(title) <= set(p.job_title.lower().split()):
        return False
    if company and company not in p.company.lower():
        return False
    raw = facets.get("network", [""])[0]
    if raw:
        try:
            degrees = {str(d) for d in json.loads(raw)}
        except ValueError:
            degrees = set(raw.replace('"', "").strip("[]").split(","))
        if ("F" if first else "S") not in degrees:
            return False
    return True


@dataclass(frozen=True)
class _Window:
    """Write numbers after ``since`` and up to ``upto`` (None: unbounded on that side)."""

    since: int | None
    upto: int | None

    @property
    def bounded(self) -> bool:
        return self.since is not None or self.upto is not None

    def holds(self, seq: int) -> bool:
        return (self.since is None or seq > self.since) and (self.upto is None
                                                              or seq <= self.upto)
