"""A hostile HTTP client against every route the sandbox serves (enumerated from the Starlette
app, so a new route is covered without a word here): random methods, paths, headers and
bodies are answered with a 4xx (or a 2xx), never a 5xx and never a traceback. Malformed JSON
is a 400, a body that is not JSON a 415, an oversized one a 413."""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import BaseRoute, Mount, Route

from engine.sandbox import Sandbox
from engine.sandbox.guard import MAX_BODY, MAX_DEPTH

FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
PROVIDER_OF = {"/v1": "edges", "/linkedapi": "linkedapi", "/linkedin": "connectsafely"}


def _routes(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, list[str]]]:
    for route in routes:
        if isinstance(route, Mount):
            yield from _routes(list(route.routes), prefix + route.path)
        elif isinstance(route, Route):
            yield prefix + route.path, sorted(route.methods or ["GET"])


BOX = Sandbox.open(None, profiles=5)
ROUTES = sorted(_routes(list(BOX.app.routes)))
_KEPT = tempfile.TemporaryDirectory(prefix="sandbox-hostile-")
#: the same, written through to a state directory (what a request writes must be writable)
KEPT = Sandbox.open(Path(_KEPT.name), profiles=5)
KNOWN = ["ident-alice", "acct-alice", "acc_12345", "https://www.linkedin.com/in/ada-lovelace-0001",
         "linkedin-connect-profile", "linkedin-me", "linkedin-extract-conversations"]


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_the_routes_are_enumerated() -> None:
    paths = {p for p, _ in ROUTES}
    assert len(paths) > 40
    assert {"/v1/actions/{action}/run/live", "/_sandbox/faults", "/health"} <= paths
    assert any(p.startswith("/linkedapi/") for p in paths)
    assert any(p.startswith("/linkedin/") for p in paths)


def _fill(template: str, values: list[str]) -> str:
    it = iter(values)
    return re.sub(r"\{[^}]+\}", lambda _: quote(next(it, "x"), safe=""), template)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids,
                                                              max_size=4),
    max_leaves=12)
ROUTE_KEYS = ["input", "identity_ids", "parameters", "callback", "timezone", "cron",
              "linkedin_profile_url", "accountId", "profileId", "message", "actionType",
              "workflow", "url", "headers", "identity", "profile", "uid", "name"]
route_shaped = st.dictionaries(st.sampled_from(ROUTE_KEYS), json_values, max_size=5)
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    route_shaped.map(lambda v: json.dumps(v).encode()),
    st.integers(MAX_DEPTH + 1, 5000).map(_deep),
    st.just(b'{"a": "\\ud800"}'),
    st.just(b"\xff\xfe{}"),
)
content_types = st.sampled_from([None, "application/json", "text/plain", "application/xml",
                                 "application/json; charset=utf-8", "multipart/form-data",
                                 "application/x-www-form-urlencoded", "garbage/\x7f"])
segments = st.one_of(st.sampled_from(KNOWN), st.text(max_size=30))


async def _call(method: str, path: str, provider: str | None, auth: bool,
                content_type: str | None, body: bytes, box: Sandbox = BOX) -> httpx.Response:
    headers = dict(box.headers(provider)) if provider and auth else {}
    if content_type is not None:
        headers["content-type"] = content_type
    async with httpx.AsyncClient(transport=box.transport, base_url="http://sandbox") as c:
        return await c.request(method, path, headers=headers, content=body)


def _check(resp: httpx.Response) -> None:
    assert resp.status_code < 500, (resp.status_code, resp.text[:500])
    assert "Traceback" not in resp.text


@FUZZ
@given(route=st.sampled_from(ROUTES), method=st.sampled_from(METHODS),
       values=st.lists(segments, max_size=4), auth=st.booleans(), body=bodies,
       content_type=content_types, use_route_method=st.booleans(), kept=st.booleans())
def test_every_route_answers_hostile_requests_without_a_5xx(
        route: tuple[str, list[str]], method: str, values: list[str], auth: bool, body: bytes,
        content_type: str | None, use_route_method: bool, kept: bool) -> None:
    template, methods = route
    if use_route_method:
        method = methods[0]
    provider = next((p for pre, p in PROVIDER_OF.items() if template.startswith(pre)), None)
    path = _fill(template, values)
    resp = asyncio.run(_call(method, path, provider, auth, content_type, body,
                             KEPT if kept else BOX))
    _check(resp)


@FUZZ
@given(path=st.text(max_size=60), method=st.sampled_from(METHODS), body=bodies)
def test_any_path_is_answered_without_a_5xx(path: str, method: str, body: bytes) -> None:
    prefix = ["/v1/", "/linkedapi/", "/linkedin/", "/_sandbox/", "/"]
    for pre in prefix:
        resp = asyncio.run(_call(method, pre + quote(path), "edges", True, None, body))
        _check(resp)


POSTS = [(p, m) for p, ms in ROUTES for m in ms if m == "POST"]


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1000, 100_000])
@pytest.mark.parametrize(("template", "method"), POSTS)
def test_deeply_nested_json_is_a_400_on_every_post_route(template: str, method: str,
                                                         depth: int) -> None:
    provider = next((p for pre, p in PROVIDER_OF.items() if template.startswith(pre)), None)
    path = _fill(template, KNOWN)
    resp = asyncio.run(_call(method, path, provider, True, "application/json", _deep(depth)))
    assert resp.status_code == 400, resp.text
    assert "nest" in resp.text


@pytest.mark.parametrize(("body", "content_type", "status"), [
    (b'{"input": ', "application/json", 400),
    (b'{"a": "\\ud800"}', "application/json", 400),
    (b"\xff\xfe", "application/json", 400),
    (b"input=1", "application/x-www-form-urlencoded", 415),
    (b"{}", "text/plain", 415),
    (b"{" + b" " * (MAX_BODY + 1) + b"}", "application/json", 413),
])
def test_bad_bodies_are_4xx_in_the_provider_shape(body: bytes, content_type: str,
                                                  status: int) -> None:
    edges = asyncio.run(_call("POST", "/v1/actions/linkedin-me/run/live", "edges", True,
                              content_type, body))
    assert edges.status_code == status
    assert edges.json()["error_label"] and edges.json()["status_code"] == status
    cs = asyncio.run(_call("POST", "/linkedin/connect", "connectsafely", True, content_type,
                           body))
    assert cs.status_code == status and cs.json()["success"] is False
    la = asyncio.run(_call("POST", "/linkedapi/workflows", "linkedapi", True, content_type,
                           body))
    assert la.status_code == status and la.json()["success"] is False


@pytest.mark.parametrize("timezone", ["Europe", "America", "x" * 300, "../../etc/passwd",
                                      "Europe/Paris\x00", 7, "UTC/", "Europe/"])
def test_a_schedule_with_a_bad_timezone_is_a_400(timezone: Any) -> None:
    body = {"identity_ids": ["ident-alice"], "cron": "0 9 * * 1-5", "timezone": timezone,
            "inputs": [{"linkedin_profile_url": "https://www.linkedin.com/in/ada-lovelace-0001"}]}
    resp = asyncio.run(_call("POST", "/v1/actions/linkedin-visit-profile/run/schedule", "edges",
                             True, "application/json", json.dumps(body).encode()))
    assert resp.status_code == 400, resp.text
    assert resp.json()["error_label"] in ("BAD_INPUT", "BAD_PARAMETERS")


PARAM_KEYS = ["max_results", "sync_mode", "read", "message", "subject",
              "only_extract_unique_profile", "files"]
ODD_VALUES = st.sampled_from(["abc", "10", "incremental", -1, 0, 1.5, True, False, [], {},
                             10**12, None])
RUN_ACTIONS = ["linkedin-search-people", "linkedin-extract-conversations",
               "linkedin-extract-connections", "linkedin-extract-messages",
               "linkedin-connect-profile", "linkedin-message-profile", "linkedin-me"]


@FUZZ
@given(action=st.sampled_from(RUN_ACTIONS), mode=st.sampled_from(["live", "async", "schedule"]),
       params=st.dictionaries(st.sampled_from(PARAM_KEYS), ODD_VALUES | json_values,
                              max_size=3),
       input=st.dictionaries(st.sampled_from([*ROUTE_KEYS, "linkedin_people_search_url",
                                              "linkedin_thread_url"]),
                             json_values | st.sampled_from(KNOWN), max_size=2))
def test_an_accepted_edges_run_never_breaks_later_requests(
        action: str, mode: str, params: dict[str, Any], input: dict[str, Any]) -> None:
    """A run the sandbox accepts is processed later (the pump, at every Edges request): its
    parameters must be checked when it is accepted, or every later request fails."""
    box = Sandbox.open(None, profiles=3)
    body: dict[str, Any] = {"identity_ids": ["ident-alice"], "parameters": params}
    if mode == "live":
        body["input"] = input
    else:
        body["inputs"] = [input]
    if mode == "schedule":
        body["schedule_at"] = "2026-01-05T08:00:00Z"

    async def go() -> None:
        async with box.client("edges") as c:
            _check(await c.post(f"actions/{action}/run/{mode}", json=body))
            await box.tick()
            _check(await c.get("runs"))
            _check(await c.get("schedules"))

    asyncio.run(go())


@pytest.mark.parametrize("mode", ["live", "async"])
@pytest.mark.parametrize("cap", ["abc", 0, -3, 2.5, True, [1], 10**9])
def test_a_bad_max_results_is_a_400_and_poisons_nothing(mode: str, cap: Any) -> None:
    box = Sandbox.open(None, profiles=3)
    key = "input" if mode == "live" else "inputs"
    search = {"linkedin_people_search_url": "https://www.linkedin.com/search/?keywords=a"}
    body = {key: search if mode == "live" else [search], "identity_ids": ["ident-alice"],
            "parameters": {"max_results": cap}}

    async def go() -> None:
        async with box.client("edges") as c:
            r = await c.post(f"actions/linkedin-search-people/run/{mode}", json=body)
            assert r.status_code == 400 and r.json()["error_label"] == "BAD_PARAMETERS"
            assert (await c.get("runs")).status_code == 200

    asyncio.run(go())

