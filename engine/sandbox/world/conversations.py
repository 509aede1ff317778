"""Threads and messages: opening a thread, appending to it, scheduling the lead's reply."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta

from engine.sandbox.world.model import IdentityState, Message, Profile, Thread
from engine.sandbox.world.names import REPLIES
from engine.sandbox.world.state import WorldState, digest


class Conversations(WorldState):
    """Threads and messages (the layer under the timeline)."""

    def _thread(self, identity: str, url: str, at: datetime) -> Thread:
        threads = self.threads.setdefault(identity, {})
        thread = threads.get(url)
        if thread is None:
            raw = digest(self.seed, "thread", identity, url)[:18]
            tid = "2-" + base64.b64encode(raw).decode().replace("/", "_").replace("+", "-")
            thread = Thread(thread_id=tid, identity=identity, profile_url=url, created_at=at)
            threads[url] = thread
            self._thread_index[tid] = (identity, url)
        return thread

    def _append(self, thread: Thread, *, from_us: bool, sender: int, text: str, at: datetime,
                subject: str | None = None) -> Message:
        msg = Message(message_id=self._next_id("msg"), thread_id=thread.thread_id,
                      sender_profile_id=sender, from_us=from_us, text=text, created_at=at,
                      subject=subject, seq=self._next_write())
        thread.messages.append(msg)
        self._thread_versions[thread.identity] = self._thread_versions.get(thread.identity, 0) + 1
        return msg

    def _maybe_schedule_reply(self, ident: IdentityState, profile: Profile, thread: Thread) -> None:
        if (ident.uid, profile.url) in self._pending_replies:
            return
        ours = sum(1 for m in thread.messages if m.from_us)
        rng = self._rng("reply", ident.uid, profile.url, ours)
        replies = profile.replies if profile.replies is not None else (
            rng.random() < self.config.reply_for([m.text for m in thread.messages if m.from_us]))
        if not replies:
            return
        lo, hi = self.config.reply_delay_hours
        at = self.now + timedelta(hours=rng.uniform(lo, hi))
        self._pending_replies.add((ident.uid, profile.url))
        self._schedule(at, "reply", ident.uid, profile.url, text=rng.choice(REPLIES))
