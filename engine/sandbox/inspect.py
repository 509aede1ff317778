"""The inspection API (``/_sandbox``): ground truth and knobs for tests; not a provider API.

``GET  /world``                      summary (``World.inspect()``)
``GET  /deliveries``                 every real effect; filters ``identity``, ``profile``, ``kind``
``GET  /deliveries/by-pair``         the same grouped per (identity, profile)
``GET  /counts``                     ``{count}`` for ``identity``, ``kind``, ``since``
``GET  /duplicates``                 texts delivered more than once (``kind``, default message)
``GET  /overlaps``                   Edges calls that began while another of the same identity
                                     was still being answered (not persisted across restarts)
``GET  /clock``  ``POST /clock/advance`` {seconds|minutes|hours|days|to} (virtual clock only)
``GET  /faults`` ``POST /faults``    read / change the fault knobs
``POST /auth``                       {identity, ok, at?}: expire or re-authenticate
``GET  /integration-events``         AUTH_EXPIRED / AUTH_SUCCESS webhooks the world emitted
``POST /integration-webhooks``       {url, headers?}: POST those events (Edges identities) there
``GET  /callbacks``                  queued or delivered run callbacks (Edges)
``POST /tick``                       run due schedule iterations and queued runs
``POST /profiles`` ``POST /identities``  add edge cases on demand
``GET  /relationship`` ``GET /conversation``  ?identity=&profile= ground truth
"""

from __future__ import annotations

from dataclasses import fields
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from engine.clock import VirtualClock
from engine.sandbox.common import JSON, iso, parse_iso, read_json
from engine.sandbox.edges.api import EdgesAPI
from engine.sandbox.edges.callbacks import callback_url_problem
from engine.sandbox.world import (
    Delivery,
    FaultConfig,
    IdentityState,
    Profile,
    World,
    WorldError,
)


def _delivery(d: Delivery) -> dict[str, Any]:
    return {"identity": d.identity, "profile_url": d.profile_url, "kind": d.kind,
            "at": iso(d.at), "text": d.text}


def _bad(message: str, status: int = 400) -> JSON:
    return JSON({"error": message}, status)


class _Base:
    """The world (and the Edges API, for its callbacks and tick) and request helpers."""

    def __init__(self, world: World, edges: EdgesAPI | None = None) -> None:
        self.world = world
        self.edges = edges

    async def body_of(self, request: Request) -> dict[str, Any]:
        try:
            body = await read_json(request)
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    async def keyed_body(self, request: Request, key: str, allowed: set[str],
                         ) -> tuple[str, dict[str, Any]] | Response:
        """The body's string ``key`` and its other (allowed) keys, or a 400."""
        body = await self.body_of(request)
        if not isinstance(body.get(key), str) or set(body) - allowed:
            return _bad(f"body: {key} required; allowed keys {sorted(allowed)}")
        return body[key], {k: v for k, v in body.items() if k != key}

    def pair_of(self, request: Request) -> tuple[IdentityState, Profile] | Response:
        """The ``?identity=&profile=`` of a ground-truth query, or a 400."""
        q = request.query_params
        ident = self.world.find_identity(q.get("identity", ""))
        if ident is None or not q.get("profile"):
            return _bad("identity and profile are required")
        try:
            return ident, self.world.profile(q["profile"])
        except WorldError as exc:
            return _bad(exc.message)

    def filtered(self, request: Request) -> list[Delivery]:
        q = request.query_params
        return self.world.deliveries(q.get("identity") or None, q.get("profile") or None,
                                     q.get("kind") or None)


class _GroundTruth(_Base):
    """What really happened: the summary, deliveries, counts, duplicates, relationships."""

    async def summary(self, request: Request) -> Response:
        return JSON(self.world.inspect())

    async def deliveries(self, request: Request) -> Response:
        try:
            return JSON([_delivery(d) for d in self.filtered(request)])
        except (KeyError, WorldError) as exc:
            return _bad(str(exc))

    async def by_pair(self, request: Request) -> Response:
        try:
            items = self.filtered(request)
        except (KeyError, WorldError) as exc:
            return _bad(str(exc))
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for d in items:
            groups.setdefault((d.identity, d.profile_url), []).append(_delivery(d))
        return JSON([{"identity": i, "profile_url": p, "deliveries": ds}
                     for (i, p), ds in sorted(groups.items())])

    async def counts(self, request: Request) -> Response:
        q = request.query_params
        try:
            since = parse_iso(q["since"]) if q.get("since") else None
            n = self.world.count(q.get("identity") or None, q.get("kind") or None, since)
        except (KeyError, ValueError) as exc:
            return _bad(str(exc))
        return JSON({"count": n})

    async def duplicates(self, request: Request) -> Response:
        kind = request.query_params.get("kind", "message")
        return JSON([{"identity": i, "profile_url": p, "text": t, "count": n}
                     for i, p, t, n in self.world.duplicates(kind)])

    async def overlaps(self, request: Request) -> Response:
        return JSON(self.world.overlaps)

    async def relationship(self, request: Request) -> Response:
        pair = self.pair_of(request)
        if isinstance(pair, Response):
            return pair
        ident, p = pair
        rel = ("connected" if p.url in self.world.network[ident.uid] else
               "pending" if p.url in self.world.invitations[ident.uid] else "none")
        return JSON({"identity": ident.uid, "profile_url": p.url, "relationship": rel,
                     "accessible": p.accessible})

    async def conversation(self, request: Request) -> Response:
        pair = self.pair_of(request)
        if isinstance(pair, Response):
            return pair
        ident, p = pair
        t = self.world.threads[ident.uid].get(p.url)
        if t is None:
            return JSON(None)
        return JSON({"thread_id": t.thread_id, "messages": [
            {"from_us": m.from_us, "text": m.text, "at": iso(m.created_at)} for m in t.messages]})


class _Knobs(_Base):
    """What tests change: the virtual clock, faults, auth, profiles and identities."""

    async def clock(self, request: Request) -> Response:
        return JSON({"now": iso(self.world.now),
                     "virtual": isinstance(self.world.clock, VirtualClock)})

    async def advance(self, request: Request) -> Response:
        if not isinstance(self.world.clock, VirtualClock):
            return _bad("the sandbox runs on the real clock", 409)
        body = await self.body_of(request)
        try:
            if body.get("to"):
                self.world.clock.set(parse_iso(str(body["to"])))
            else:
                delta = timedelta(
                    seconds=float(body.get("seconds", 0)), minutes=float(body.get("minutes", 0)),
                    hours=float(body.get("hours", 0)), days=float(body.get("days", 0)))
                self.world.clock.advance(delta)
        except (TypeError, ValueError) as exc:
            return _bad(str(exc))
        if self.edges is not None:
            await self.edges.tick()
        return JSON({"now": iso(self.world.now), "virtual": True})

    def faults_out(self) -> dict[str, Any]:
        f = self.world.config.faults
        return {"latency_s": f.latency_s, "rate_429": f.rate_429, "rate_5xx": f.rate_5xx,
                "rate_timeout": f.rate_timeout, "retry_after_s": f.retry_after_s,
                "timeout_hang_s": f.timeout_hang_s,
                "auth_expire_at": {k: iso(v) for k, v in f.auth_expire_at.items()},
                "reauth_at": {k: iso(v) for k, v in f.reauth_at.items()},
                "injected": dict(self.world.faults_injected)}

    async def get_faults(self, request: Request) -> Response:
        return JSON(self.faults_out())

    async def set_faults(self, request: Request) -> Response:
        body = await self.body_of(request)
        f = self.world.config.faults
        # each knob's declared type (a scenario's `latency_s: 0` loads an int: converting to
        # the current value's type truncated 1.7 to 1)
        numeric = {fl.name: float if fl.type in ("float", float) else int
                   for fl in fields(FaultConfig)
                   if fl.name not in ("auth_expire_at", "reauth_at")}
        for key, value in body.items():
            if key not in numeric:
                return _bad(f"unknown fault knob {key!r}")
            try:
                setattr(f, key, numeric[key](value))
            except (TypeError, ValueError):
                return _bad(f"{key} must be a number")
        return JSON(self.faults_out())

    async def set_auth(self, request: Request) -> Response:
        body = await self.body_of(request)
        ident = body.get("identity")
        if not isinstance(ident, str) or self.world.find_identity(ident) is None:
            return _bad("identity: an existing identity uid or alias is required", 404)
        try:
            at = parse_iso(str(body["at"])) if body.get("at") else None
        except ValueError as exc:
            return _bad(str(exc))
        self.world.set_auth(ident, bool(body.get("ok", False)), at)
        return JSON({"identity": self.world.identity(ident).uid,
                     "auth_ok": self.world.auth_ok(ident)})

    async def add_profile(self, request: Request) -> Response:
        given = await self.keyed_body(request, "url", {
            "url", "first_name", "full_name", "company", "job_title", "location", "accessible",
            "already_connected_with", "writes_first_to", "accepts", "replies"})
        if isinstance(given, Response):
            return given
        url, args = given
        try:
            p = self.world.add_profile(url, **args)
        except (WorldError, TypeError) as exc:
            return _bad(str(exc))
        return JSON({"url": p.url, "profile_id": p.profile_id, "full_name": p.full_name}, 201)

    async def add_identity(self, request: Request) -> Response:
        given = await self.keyed_body(request, "uid", {
            "uid", "name", "kind", "type", "aliases", "provider", "limits", "profile_id"})
        if isinstance(given, Response):
            return given
        uid, args = given
        try:
            i = self.world.add_identity(uid, **args)
        except (ValueError, TypeError) as exc:
            return _bad(str(exc))
        return JSON({"uid": i.uid, "profile_id": i.profile_id, "profile_url": i.profile_url}, 201)


class _EdgesHooks(_Base):
    """The Edges side: integration events and webhooks, run callbacks, tick."""

    async def integration_events(self, request: Request) -> Response:
        self.world.inspect()  # applies due auth changes
        return JSON(self.world.integration_events)

    async def callbacks(self, request: Request) -> Response:
        out: list[Any] = []
        for name, st in sorted(self.world.api_state.items()):
            if isinstance(st, dict):
                for cb in st.get("callbacks", []):
                    out.append({"api": name, **cb})
        return JSON(out)

    async def add_webhook(self, request: Request) -> Response:
        body = await self.body_of(request)
        if self.edges is None or not isinstance(body.get("url"), str):
            return _bad("body: url required")
        problem = callback_url_problem(body["url"])
        if problem is not None:
            return _bad(f"url {problem}")
        headers = body.get("headers") or {}
        if not isinstance(headers, dict):
            return _bad("headers must be an object")
        self.edges.add_integration_webhook(body["url"],
                                           {str(k): str(v) for k, v in headers.items()})
        return JSON({"url": body["url"]}, 201)

    async def tick(self, request: Request) -> Response:
        started = await self.edges.tick() if self.edges is not None else 0
        return JSON({"runs_started": started, "now": iso(self.world.now)})


class _Inspection(_GroundTruth, _Knobs, _EdgesHooks):
    """The whole inspection API: its handlers by path."""

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/world", self.summary, methods=["GET"]),
            Route("/deliveries", self.deliveries, methods=["GET"]),
            Route("/deliveries/by-pair", self.by_pair, methods=["GET"]),
            Route("/overlaps", self.overlaps, methods=["GET"]),
            Route("/counts", self.counts, methods=["GET"]),
            Route("/duplicates", self.duplicates, methods=["GET"]),
            Route("/clock", self.clock, methods=["GET"]),
            Route("/clock/advance", self.advance, methods=["POST"]),
            Route("/faults", self.get_faults, methods=["GET"]),
            Route("/faults", self.set_faults, methods=["POST"]),
            Route("/auth", self.set_auth, methods=["POST"]),
            Route("/integration-events", self.integration_events, methods=["GET"]),
            Route("/callbacks", self.callbacks, methods=["GET"]),
            Route("/integration-webhooks", self.add_webhook, methods=["POST"]),
            Route("/tick", self.tick, methods=["POST"]),
            Route("/profiles", self.add_profile, methods=["POST"]),
            Route("/identities", self.add_identity, methods=["POST"]),
            Route("/relationship", self.relationship, methods=["GET"]),
            Route("/conversation", self.conversation, methods=["GET"]),
        ]


def routes(world: World, edges: EdgesAPI | None = None) -> list[BaseRoute]:
    """The inspection routes over ``world`` (and the Edges API for its callbacks and tick)."""
    return _Inspection(world, edges).routes()
