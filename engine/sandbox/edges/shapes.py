"""How the Edges API renders profiles, participants, messages and conversations."""

from __future__ import annotations

import json
from typing import Any

from engine.sandbox.common import iso
from engine.sandbox.edges.base import EdgesBase
from engine.sandbox.world import (
    IdentityState,
    Message,
    Profile,
    Thread,
)


class Shapes(EdgesBase):
    """Result shapes (conversations cached per message count)."""

    @staticmethod
    def _profile_out(p: Profile) -> dict[str, Any]:
        return {
            "linkedin_profile_id": p.profile_id,
            "sales_navigator_profile_id": p.sales_navigator_profile_id,
            "linkedin_profile_url": p.url,
            "linkedin_profile_handle": p.handle,
            "first_name": p.first_name,
            "last_name": p.last_name,
            "full_name": p.full_name,
            "job_title": p.job_title,
            "headline": p.headline,
            "company_name": p.company,
            "location": p.location,
        }

    def _participant(self, ident: IdentityState, url: str) -> dict[str, Any]:
        p = self.world.profiles[url]
        return {"linkedin_profile_id": p.profile_id, "linkedin_profile_url": p.url,
                "sales_navigator_profile_id": p.sales_navigator_profile_id,
                "first_name": p.first_name, "last_name": p.last_name, "full_name": p.full_name,
                "job_title": p.job_title}

    def _me_participant(self, ident: IdentityState) -> dict[str, Any]:
        first, _, last = ident.name.partition(" ")
        return {"linkedin_profile_id": ident.profile_id,
                "linkedin_profile_url": ident.profile_url, "first_name": first,
                "last_name": last, "full_name": ident.name, "job_title": ""}

    def _message_out(self, ident: IdentityState, t: Thread, m: Message,
                     position: int) -> dict[str, Any]:
        who = self._me_participant(ident) if m.from_us else self._participant(ident,
                                                                               t.profile_url)
        return {
            "content": m.text, "first_name": who["first_name"], "last_name": who["last_name"],
            "linkedin_profile_id": m.sender_profile_id,
            "sales_navigator_profile_id": who.get("sales_navigator_profile_id"),
            "job_title": who["job_title"], "delivered_at": iso(m.created_at),
            "created_at": iso(m.created_at), "message_id": m.message_id,
            "linkedin_thread_id": t.thread_id, "position": position, "attachments": [],
        }

    def _conversation_out(self, ident: IdentityState, t: Thread) -> dict[str, Any]:
        # threads only grow, so (thread, message count) identifies a rendering
        return self._conversation_cached(ident, t)[0]

    def _conversation_cached(self, ident: IdentityState, t: Thread,
                             ) -> tuple[dict[str, Any], bytes]:
        cached = self._conv_cache.get(t.thread_id)
        if cached is not None and cached[0] == len(t.messages):
            return cached[1], cached[2]
        out = self._render_conversation(ident, t)
        raw = json.dumps(out, separators=(",", ":"), ensure_ascii=False).encode()
        self._conv_cache[t.thread_id] = (len(t.messages), out, raw)
        return out, raw

    def _render_conversation(self, ident: IdentityState, t: Thread) -> dict[str, Any]:
        last, first = t.messages[-1], t.messages[0]
        received = sum(1 for m in t.messages if not m.from_us)
        unread = t.unread_count
        return {
            "linkedin_thread_id": t.thread_id,
            "linkedin_thread_url": t.thread_url,
            "participants": [self._participant(ident, t.profile_url),
                             self._me_participant(ident)],
            "last_message": {"linkedin_profile_id": last.sender_profile_id, "content": last.text,
                             "text": last.text, "created_at": iso(last.created_at),
                             "delivered_at": iso(last.created_at),
                             "message_id": last.message_id},
            # inferred: who opened the conversation ("lead messaged first" in the guide)
            "first_message": {"linkedin_profile_id": first.sender_profile_id,
                              "created_at": iso(first.created_at)},
            "last_activity_at": iso(t.last_activity_at),
            "read": unread == 0,
            "unread_count": unread,
            "total_received_messages": received,
            "created_at": iso(t.created_at),
            "sponsored": False,
        }
