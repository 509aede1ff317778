"""The Edges list actions (search, connections, invitations, conversations, messages), their
cursors and incremental watermarks."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
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
    """Items of the list actions, unrendered, and how to render one."""

    def _list(self, action: str, ident: IdentityState | None, input: dict[str, Any],
              params: dict[str, Any], since: datetime | None, *, inbox: bool = False,
              ) -> list[dict[str, Any]]:
        """Every item of a list action (newest first), only those after ``since`` if given."""
        raw, render = self._list_raw(action, ident, input, params, since, inbox=inbox)
        return [render(x) for x in raw]

    def _list_raw(self, action: str, ident: IdentityState | None, input: dict[str, Any],
                  params: dict[str, Any], since: datetime | None, *, inbox: bool = False,
                  ) -> tuple[list[Any], Callable[[Any], dict[str, Any]]]:
        """The items of a list action unrendered, and how to render one (so that a live page
        renders only its own 20 or 40 items)."""
        w = self.world
        if action == "linkedin-search-people":
            return self._search_raw(ident, input, params)
        assert ident is not None
        if action == "linkedin-extract-connections":
            def connection(item: tuple[Profile, datetime]) -> dict[str, Any]:
                p, at = item
                return {**self._profile_out(p), "connected_at": iso(at),
                        "profile_image_url": None}

            return [c for c in w.connections(ident.uid) if since is None or c[1] > since], \
                connection
        if action == "linkedin-extract-sent-invitations":  # inferred shape
            def invitation(i: Invitation) -> dict[str, Any]:
                return {**self._profile_out(w.profiles[i.profile_url]),
                        "sent_at": iso(i.sent_at), "created_at": iso(i.sent_at),
                        "message": i.note or ""}

            return w.pending_invitations(ident.uid), invitation
        if action == "linkedin-extract-conversations":
            only_unread = params.get("read") is False
            threads = [t for t in w.conversations(ident.uid)
                       if (since is None or t.last_activity_at > since)
                       and (not only_unread or t.unread_count > 0)]
            return threads, lambda t: self._conversation_out(ident, t)
        if action == "linkedin-extract-messages":
            return self._messages_raw(ident, input, since, inbox=inbox)
        raise EdgesError("NOT_FOUND", f"unknown action {action!r}")

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
                      since: datetime | None, *, inbox: bool,
                      ) -> tuple[list[Any], Callable[[Any], dict[str, Any]]]:
        """The messages of one thread, newest first, or with ``inbox`` (async and schedule
        runs) and no thread reference an inbox sync: the identity's messages across all its
        conversations, newest first, only those after ``since`` (the incremental watermark) if
        given. *Inferred*: the docs show the action with a thread input only, yet a Schedule
        of it with no ``inputs`` (``sequences/inbox-sync.yaml``, seed 000's inbox sync) is the
        documented use; a live run without a thread stays ``BAD_INPUT``."""
        ref = (input.get("linkedin_thread_url") or input.get("linkedin_conversation_url")
               or input.get("linkedin_thread_id") or input.get("conversation_id"))
        if not ref and inbox:
            mail = [(t, i, m) for t in self.world.conversations(ident.uid)
                    for i, m in enumerate(t.messages)
                    if since is None or m.created_at > since]
            mail.sort(key=lambda tim: (tim[2].created_at, tim[2].message_id), reverse=True)
            return mail, lambda tim: self._message_out(ident, tim[0], tim[2], tim[1])
        if not isinstance(ref, str) or not ref:
            raise EdgesError("BAD_INPUT",
                             "input must have required property 'linkedin_thread_url'")
        thread = self._resolve_thread(ident, ref)
        msgs = [(i, m) for i, m in enumerate(thread.messages)
                if since is None or m.created_at > since]
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

    def _cursor(self, offset: int, since: datetime | None) -> str:
        raw = json.dumps({"o": offset, "s": iso(since) if since else None,
                          "t": iso(self.world.now)}, separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    def _uncursor(self, cursor: str) -> tuple[int, datetime | None]:
        try:
            raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            offset, since, made = int(raw["o"]), raw.get("s"), parse_iso(raw["t"])
        except (ValueError, KeyError, TypeError) as exc:
            raise EdgesError("BAD_PARAMETERS", "invalid cursor") from exc
        if self.world.now - made > CURSOR_TTL:
            raise EdgesError("BAD_PARAMETERS", "cursor expired (24 h)")
        return offset, parse_iso(since) if since else None

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
