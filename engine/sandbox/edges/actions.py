"""The Edges actions that act on LinkedIn: me, visit, connect, message, InMail, withdraw."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx

from engine.sandbox.common import iso
from engine.sandbox.edges.errors import EdgesError, from_world
from engine.sandbox.edges.shapes import Shapes
from engine.sandbox.world import (
    IdentityState,
    World,
    WorldError,
)

#: an action's handler: (identity, input, parameters) -> its result JSON
Handler = Callable[[IdentityState | None, dict[str, Any], dict[str, Any]], Any]


class Actions(Shapes):
    """One handler per action; a WorldError becomes the Edges error."""

    def __init__(self, world: World, *, callback_client: httpx.AsyncClient | None = None,
                 api_keys: frozenset[str] | None = None) -> None:
        super().__init__(world, callback_client=callback_client, api_keys=api_keys)
        self._actions: dict[str, Handler] = {
            "linkedin-me": self._me,
            "linkedin-visit-profile": self._visit,
            "linkedin-connect-profile": self._connect,
            "linkedin-message-profile": self._message,
            "linkedin-inmail-profile": self._inmail,
            "linkedin-withdraw-invitation": self._withdraw,
            "linkedin-accept-invitation": self._accept,
            "linkedin-extract-received-invitations": self._received,
            "linkedin-extract-people": self._people,
            "linkedin-extract-contact": self._contact,
            "linkedin-find-profile-url": self._find_url,
        }

    @staticmethod
    def _url(input: Mapping[str, Any], key: str = "linkedin_profile_url") -> str:
        url = input.get(key)
        if not url and input.get("sales_navigator_profile_id"):
            url = f"https://www.linkedin.com/sales/lead/{input['sales_navigator_profile_id']}"
        if not isinstance(url, str) or not url:
            raise EdgesError("BAD_INPUT", f"input must have required property '{key}'")
        return url

    @staticmethod
    def _text(params: Mapping[str, Any], limit: int, required: bool) -> str | None:
        text = params.get("message")
        if text is None:
            if required:
                raise EdgesError("BAD_PARAMETERS",
                                 "parameters must have required property 'message'")
            return None
        if not isinstance(text, str):
            raise EdgesError("BAD_PARAMETERS", "parameters/message must be string")
        if len(text) > limit:
            raise EdgesError("BAD_PARAMETERS",
                             f"parameters/message must NOT have more than {limit} characters")
        return text

    def _me(self, ident: IdentityState | None, input: dict[str, Any],
            params: dict[str, Any]) -> Any:
        assert ident is not None
        self.world.me(ident.uid)
        first, _, last = ident.name.partition(" ")
        return {"linkedin_profile_id": ident.profile_id, "linkedin_profile_url": ident.profile_url,
                "linkedin_profile_handle": ident.profile_url.rsplit("/", 1)[-1],
                "first_name": first, "last_name": last, "full_name": ident.name,
                "sales_navigator": ident.kind == "sales_navigator"}

    def _visit(self, ident: IdentityState | None, input: dict[str, Any],
               params: dict[str, Any]) -> Any:
        assert ident is not None
        p = self.world.visit(ident.uid, self._url(input))
        return {"sales_navigator_profile_id": p.sales_navigator_profile_id,
                "linkedin_profile_id": p.profile_id}

    def _connect(self, ident: IdentityState | None, input: dict[str, Any],
                 params: dict[str, Any]) -> Any:
        assert ident is not None
        note = self._text(params, 300, required=False)
        inv = self.world.connect(ident.uid, self._url(input), note)
        p = self.world.profiles[inv.profile_url]
        return {"connected": False, "pending": True, "message": note or "",
                "connection_sent_date": iso(inv.sent_at),
                "sales_navigator_profile_id": p.sales_navigator_profile_id,
                "linkedin_profile_id": p.profile_id}

    def _message(self, ident: IdentityState | None, input: dict[str, Any],
                 params: dict[str, Any]) -> Any:
        assert ident is not None
        text = self._text(params, 8000, required=True)
        assert text is not None
        t = self.world.message(ident.uid, self._url(input), text)
        m = t.messages[-1]
        p = self.world.profiles[t.profile_url]
        return {"message": text, "sales_navigator_profile_id": p.sales_navigator_profile_id,
                "linkedin_profile_id": p.profile_id, "linkedin_thread_id": t.thread_id,
                "linkedin_thread_url": t.thread_url, "is_sent": True, "reply": False,
                "delivered_at": iso(m.created_at), "linkedin_message_id": m.message_id,
                "attachments": []}

    def _inmail(self, ident: IdentityState | None, input: dict[str, Any],
                params: dict[str, Any]) -> Any:
        # inferred: parameters.subject + parameters.message, result like message-profile
        assert ident is not None
        text = self._text(params, 8000, required=True)
        assert text is not None
        subject = params.get("subject")
        if subject is not None and not isinstance(subject, str):
            raise EdgesError("BAD_PARAMETERS", "parameters/subject must be string")
        t = self.world.inmail(ident.uid, self._url(input), subject or "", text)
        m = t.messages[-1]
        p = self.world.profiles[t.profile_url]
        return {"message": text, "subject": subject or "", "linkedin_profile_id": p.profile_id,
                "sales_navigator_profile_id": p.sales_navigator_profile_id,
                "linkedin_thread_id": t.thread_id, "linkedin_thread_url": t.thread_url,
                "is_sent": True, "delivered_at": iso(m.created_at),
                "linkedin_message_id": m.message_id}

    def _withdraw(self, ident: IdentityState | None, input: dict[str, Any],
                  params: dict[str, Any]) -> Any:
        # inferred result shape
        assert ident is not None
        inv = self.world.withdraw(ident.uid, self._url(input))
        p = self.world.profiles[inv.profile_url]
        return {"withdrawn": True, "linkedin_profile_id": p.profile_id,
                "sales_navigator_profile_id": p.sales_navigator_profile_id,
                "linkedin_profile_url": p.url, "connection_sent_date": iso(inv.sent_at)}

    # -- simplified: the world models no invitation sent *to* an identity, so none is ever
    # -- received; profile enrichment and contact details are drawn from the profile

    def _accept(self, ident: IdentityState | None, input: dict[str, Any],
                params: dict[str, Any]) -> Any:
        assert ident is not None
        url = self._url(input)
        if self.world.relationship(ident.uid, url) == "connected":
            raise EdgesError("ALREADY_CONNECTED", "already a 1st degree connection")
        raise EdgesError("NO_RESULT", "no invitation received from this profile")

    def _received(self, ident: IdentityState | None, input: dict[str, Any],
                  params: dict[str, Any]) -> Any:
        assert ident is not None
        self.world.me(ident.uid)  # auth as LinkedIn checks it
        return []

    def _people(self, ident: IdentityState | None, input: dict[str, Any],
                params: dict[str, Any]) -> Any:
        assert ident is not None
        url = self._url(input)
        self.world.relationship(ident.uid, url)  # auth, then the profile's access
        p = self.world.profile(url)
        return _person(p) | {"headline": p.headline, "location": p.location,
                             "linkedin_profile_handle": p.handle}

    def _contact(self, ident: IdentityState | None, input: dict[str, Any],
                 params: dict[str, Any]) -> Any:
        assert ident is not None
        url = self._url(input)
        self.world.relationship(ident.uid, url)
        p = self.world.profile(url)
        domain = "".join(c for c in p.company.lower() if c.isalnum()) or "example"
        local = ".".join(part for part in (p.first_name.lower(), p.last_name.lower()) if part)
        return {"linkedin_profile_url": p.url, "linkedin_profile_id": p.profile_id,
                "emails": [f"{local or p.handle}@{domain}.example"], "phones": [],
                "websites": [], "twitter": None}

    def _find_url(self, ident: IdentityState | None, input: dict[str, Any],
                  params: dict[str, Any]) -> Any:
        # takes no identity (providers.md §1.1); the input field names are inferred
        words = [input.get(k) for k in ("full_name", "first_name", "last_name", "company_name")]
        query = " ".join(w for w in words if isinstance(w, str) and w.strip())
        if not query:
            raise EdgesError("BAD_INPUT", "input must have required property 'full_name'")
        found = self.world.search_people(query, 1)
        if not found:
            raise EdgesError("NO_RESULT", f"no profile found for {query!r}")
        return _person(found[0])

    def _perform(self, action: str, ident: IdentityState | None, input: dict[str, Any],
                 params: dict[str, Any]) -> Any:
        handler = self._actions.get(action)
        if handler is None:
            raise EdgesError("NOT_FOUND", f"unknown action {action!r}")
        try:
            return handler(ident, input, params)
        except WorldError as exc:
            raise from_world(exc) from None


def _person(p: Any) -> dict[str, Any]:
    return {"linkedin_profile_url": p.url, "linkedin_profile_id": p.profile_id,
            "sales_navigator_profile_id": p.sales_navigator_profile_id,
            "full_name": p.full_name, "first_name": p.first_name, "last_name": p.last_name,
            "job_title": p.job_title, "company_name": p.company}
