"""`seqrun serve`: the receiver authenticates, bounds and decodes every body, and records each
accepted event once before it answers (engine/serve, engine/store/inbound)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Route

from engine.cli import main
from engine.errors import ConfigError
from engine.model import Callback, Metadata, Schedule, Workflow, WorkflowNode
from engine.providers.edges.schedule_config import desired_config, redact
from engine.serve.app import build_app
from engine.serve.config import (
    SECRET_HEADER,
    ServeConfig,
    callback_urls,
    expand_webhook,
    mask_webhook,
    receiver_warnings,
)
from engine.store import Store
from engine.store.inbound import inbound_events
from engine.store.workflows import put_workflow_run

EDGES = "edges-secret-0123456789abcdef"
LINKEDAPI = "linkedapi-token-0123456789abcdef"
CONFIG = ServeConfig(EDGES, LINKEDAPI, "https://hooks.example.com", max_body=4096)
GOOD = {SECRET_HEADER: EDGES}
CALLBACK = {"callback_ref_uid": "cbr-1", "run": {"run_uid": "run-1", "status": "SUCCEEDED"},
            "custom_data": {"k": "v"}, "data": []}
AUTH_EXPIRED = {"event": "AUTH_EXPIRED", "identity_uid": "ident-alice",
                "integration": "linkedin", "at": "2026-01-05T09:00:00Z"}
WF_EVENT = {"id": "evt-1", "type": "workflow.completed", "createdAt": "2026-01-05T09:00:00Z",
            "data": {"workflowId": "wf-1", "accountId": "acct-alice", "status": "completed"}}


@pytest.fixture
async def client(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(store, CONFIG))
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as c:
        yield c


def _linkedapi(path: str, token: str = LINKEDAPI) -> str:
    return f"/hooks/linkedapi/{token}/{path}"


async def test_health_answers_without_a_secret(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


@pytest.mark.parametrize("headers", [{}, {SECRET_HEADER: "wrong-secret-0123456789"},
                                     {SECRET_HEADER: EDGES[:-1]}, {SECRET_HEADER: EDGES + "x"},
                                     {"Authorization": f"Bearer {EDGES}"}])
@pytest.mark.parametrize("path", ["/hooks/edges/callbacks", "/hooks/edges/integrations"])
async def test_edges_without_the_right_secret_is_401_and_nothing_is_recorded(
    client: httpx.AsyncClient, store: Store, headers: dict[str, str], path: str
) -> None:
    body = CALLBACK if path.endswith("callbacks") else AUTH_EXPIRED
    r = await client.post(path, json=body, headers=headers)
    assert r.status_code == 401
    assert EDGES not in r.text
    assert inbound_events(store) == []


@pytest.mark.parametrize("token", ["wrong-token-0123456789abcdef", LINKEDAPI[:-1], "x"])
async def test_linkedapi_with_a_wrong_token_is_401_and_nothing_is_recorded(
    client: httpx.AsyncClient, store: Store, token: str
) -> None:
    r = await client.post(_linkedapi("events", token), json=WF_EVENT)
    assert r.status_code == 401
    r = await client.post(_linkedapi("workflows/hooked", token), json={"status": "completed"})
    assert r.status_code == 401
    assert LINKEDAPI not in r.text
    assert inbound_events(store) == []


async def test_a_provider_without_a_configured_secret_is_refused(store: Store) -> None:
    app = build_app(store, ServeConfig(edges_secret=EDGES))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://r") as c:
        r = await c.post("/hooks/linkedapi//events", json=WF_EVENT)
        assert r.status_code in (401, 404)
        r = await c.post("/hooks/linkedapi/anything-at-all-here/events", json=WF_EVENT)
        assert r.status_code == 401
    assert inbound_events(store) == []


async def test_the_same_callback_three_times_is_one_event(
    client: httpx.AsyncClient, store: Store
) -> None:
    answers = [(await client.post("/hooks/edges/callbacks", json=CALLBACK, headers=GOOD)).json()
               for _ in range(3)]
    assert answers == [{"recorded": True}, {"recorded": False}, {"recorded": False}]
    (event,) = inbound_events(store)
    assert (event.source, event.kind, event.dedupe_key) == ("edges", "callback", "edges:cb:cbr-1")
    assert event.payload == CALLBACK and event.subject == "run-1"


async def test_integration_retries_dedupe_on_their_content_in_any_key_order(
    client: httpx.AsyncClient, store: Store
) -> None:
    reordered = dict(reversed(list(AUTH_EXPIRED.items())))
    for body in (AUTH_EXPIRED, reordered, AUTH_EXPIRED):
        assert (await client.post("/hooks/edges/integrations", json=body,
                                  headers=GOOD)).status_code == 200
    later = {**AUTH_EXPIRED, "event": "AUTH_SUCCESS", "at": "2026-01-05T10:00:00Z"}
    await client.post("/hooks/edges/integrations", json=later, headers=GOOD)
    assert [(e.subject, e.payload["event"]) for e in inbound_events(store)] == [
        ("ident-alice", "AUTH_EXPIRED"), ("ident-alice", "AUTH_SUCCESS")]


async def test_linkedapi_events_dedupe_on_their_id_and_hooks_on_workflow_attempt(
    client: httpx.AsyncClient, store: Store
) -> None:
    for _ in range(2):
        assert (await client.post(_linkedapi("events"), json=WF_EVENT)).status_code == 200
    put_workflow_run(store, "hooked", {"name": "hooked", "provider": "linkedapi",
                                       "state": "running", "attempt": 1})
    done = {"status": "completed", "completion": {"success": True}}
    for _ in range(2):
        assert (await client.post(_linkedapi("workflows/hooked"), json=done)).status_code == 200
    put_workflow_run(store, "hooked", {"name": "hooked", "provider": "linkedapi",
                                       "state": "running", "attempt": 2})
    await client.post(_linkedapi("workflows/hooked"), json=done)  # the next run's result
    events = inbound_events(store)
    assert [(e.kind, e.subject) for e in events] == [
        ("event", "wf-1"), ("hook", "hooked"), ("hook", "hooked")]
    assert all(LINKEDAPI not in json.dumps(e.payload) + e.dedupe_key for e in events)


@pytest.mark.parametrize(
    ("content_type", "raw", "status"),
    [
        ("text/plain", b'{"callback_ref_uid": "x"}', 415),
        (None, b'{"callback_ref_uid": "x"}', 415),
        ("application/x-www-form-urlencoded", b"a=b", 415),
        ("application/json", b"{not json", 400),
        ("application/json", b"", 400),
        ("application/json", b"\xff\xfe\x00", 400),
        ("application/json", b'{"a": NaN}', 400),
        ("application/json", b"[" * 100_000 + b"]" * 100_000, 413),
        ("application/json", b"[" * 2000 + b"]" * 2000, 400),  # no run, no ref
        ("application/json", b"[]", 400),
        ("application/json", b'"text"', 400),
        ("application/json", b'{"run": "x"}', 400),
        ("application/json", b'{"callback_ref_uid": 5}', 400),
        ("application/json", b"{}", 400),
        ("application/json", b'{"callback_ref_uid": "' + b"x" * 5000 + b'"}', 413),
        ("application/json; charset=utf-8", b'{"callback_ref_uid": "ok"}', 200),
    ],
)
async def test_bad_bodies_get_4xx_and_record_nothing(
    client: httpx.AsyncClient, store: Store, content_type: str | None, raw: bytes, status: int
) -> None:
    headers = dict(GOOD)
    if content_type is not None:
        headers["Content-Type"] = content_type
    r = await client.post("/hooks/edges/callbacks", content=raw, headers=headers)
    assert r.status_code == status, r.text
    assert len(inbound_events(store)) == (1 if status == 200 else 0)


async def test_a_body_over_the_limit_without_content_length_is_413(
    client: httpx.AsyncClient, store: Store
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"callback_ref_uid": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    r = await client.post("/hooks/edges/callbacks", content=chunks(),
                          headers={**GOOD, "Content-Type": "application/json"})
    assert r.status_code == 413
    assert inbound_events(store) == []


@pytest.mark.parametrize(("method", "path", "status"), [
    ("POST", "/hooks/edges/nope", 404), ("GET", "/", 404), ("POST", "/healthz", 405),
    ("GET", "/hooks/edges/callbacks", 405), ("PUT", "/hooks/edges/integrations", 405),
])
async def test_unknown_paths_and_methods(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    r = await client.request(method, path, headers=GOOD)
    assert r.status_code == status
    assert r.headers["content-type"].startswith("application/json")


# The fuzz draws from the app's own routes: a route added later is fuzzed without a change here.
ROUTES = [r.path for r in build_app(Store.open("sqlite://"), CONFIG).routes
          if isinstance(r, Route)]


def test_the_fuzz_sees_every_endpoint() -> None:
    assert sorted(ROUTES) == ["/healthz", "/hooks/edges/callbacks", "/hooks/edges/integrations",
                              "/hooks/linkedapi/{token}/events",
                              "/hooks/linkedapi/{token}/workflows/{name}"]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids,
                                                               max_size=4),
    max_leaves=20,
)
_shaped = st.fixed_dictionaries({}, optional={
    "callback_ref_uid": st.text(max_size=20) | st.integers(), "run": _json,
    "event": st.sampled_from(["AUTH_EXPIRED", "AUTH_SUCCESS", "DELETED", "X"]) | _json,
    "identity_uid": st.text(max_size=20) | _json, "id": st.text(max_size=20) | _json,
    "type": st.sampled_from(["workflow.completed", "account.frozen", "webhook.test"]) | _json,
    "data": _json, "status": st.sampled_from(["completed", "failed"]) | _json,
})


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    route=st.sampled_from(ROUTES),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    auth=st.sampled_from(["good", "bad", "none"]),
    content_type=st.sampled_from(["application/json", "text/plain", "", "application/ld+json"]),
    body=st.one_of(_json.map(lambda v: json.dumps(v).encode()),
                   _shaped.map(lambda v: json.dumps(v).encode()),
                   st.binary(max_size=200)),
    name=st.text(min_size=1, max_size=30).filter(lambda s: "/" not in s),
)
def test_no_input_gets_a_5xx_and_401s_record_nothing(
    tmp_path_factory: pytest.TempPathFactory, route: str, method: str, auth: str,
    content_type: str, body: bytes, name: str,
) -> None:
    store = _fuzz_store(tmp_path_factory)
    token = {"good": LINKEDAPI, "bad": "bad-token-0123456789abcdefg", "none": "-"}[auth]
    path = route.format(token=quote(token, safe=""), name=quote(name, safe=""))
    headers = {"Content-Type": content_type} if content_type else {}
    if auth == "good":
        headers[SECRET_HEADER] = EDGES
    elif auth == "bad":
        headers[SECRET_HEADER] = "bad-secret-0123456789abcdef"
    before = len(inbound_events(store))

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=build_app(store, CONFIG))
        async with httpx.AsyncClient(transport=transport, base_url="http://r") as c:
            return await c.request(method, path, content=body, headers=headers)

    r = asyncio.run(go())
    assert r.status_code < 500, (r.status_code, r.text)
    if r.status_code != 200:
        assert len(inbound_events(store)) == before
    if auth != "good" and route != "/healthz":
        assert r.status_code in (401, 404, 405)


_STORES: dict[str, Store] = {}


def _fuzz_store(factory: pytest.TempPathFactory) -> Store:
    if "s" not in _STORES:
        _STORES["s"] = Store.open(None, factory.mktemp("fuzz"))
    return _STORES["s"]


def test_the_secrets_reach_neither_the_store_nor_the_logs(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    async def go() -> None:
        transport = httpx.ASGITransport(app=build_app(store, CONFIG))
        async with httpx.AsyncClient(transport=transport, base_url="http://r") as c:
            await c.post("/hooks/edges/callbacks", json=CALLBACK, headers=GOOD)
            await c.post(_linkedapi("events"), json=WF_EVENT)
            await c.post(_linkedapi("events", "nearly-" + LINKEDAPI), json=WF_EVENT)

    asyncio.run(go())
    dump = "\n".join(store.engine.raw_connection().driver_connection.iterdump())  # type: ignore[union-attr]
    assert EDGES not in dump and LINKEDAPI not in dump
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name != "httpx")  # the client's
    assert "recorded" in ours
    assert EDGES not in ours and LINKEDAPI not in ours
    assert EDGES not in repr(CONFIG) and LINKEDAPI not in repr(CONFIG)


def test_config_from_env_and_the_urls_to_give_providers() -> None:
    env = {"SEQRUN_EDGES_WEBHOOK_SECRET": EDGES, "SEQRUN_LINKEDAPI_WEBHOOK_SECRET": LINKEDAPI,
           "SEQRUN_PUBLIC_URL": "https://hooks.example.com/"}
    config = ServeConfig.from_env(env)
    urls = [(u.provider, u.url) for u in callback_urls(config)]
    assert urls == [
        ("edges", "https://hooks.example.com/hooks/edges/callbacks"),
        ("edges", "https://hooks.example.com/hooks/edges/integrations"),
        ("linkedapi",
         "https://hooks.example.com/hooks/linkedapi/$SEQRUN_LINKEDAPI_WEBHOOK_SECRET/events"),
        ("linkedapi", "https://hooks.example.com/hooks/linkedapi/"
                      "$SEQRUN_LINKEDAPI_WEBHOOK_SECRET/workflows/WORKFLOW_NAME"),
    ]
    assert all(EDGES not in u.url + u.auth and LINKEDAPI not in u.url
               for u in callback_urls(config))


@pytest.mark.parametrize(("env", "fragment"), [
    ({"SEQRUN_EDGES_WEBHOOK_SECRET": "short"}, "at least 16 characters"),
    ({"SEQRUN_LINKEDAPI_WEBHOOK_SECRET": "a/b-0123456789abcdef"}, "must not contain"),
    ({"SEQRUN_PUBLIC_URL": "hooks.example.com"}, "must be an http(s) URL"),
])
def test_bad_configuration_is_refused_without_repeating_the_secret(
    env: dict[str, str], fragment: str
) -> None:
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")) as e:
        ServeConfig.from_env(env)
    assert "short" not in str(e.value) or "SEQRUN_PUBLIC_URL" in str(e.value)


def test_serve_needs_a_secret() -> None:
    with pytest.raises(ConfigError, match="SEQRUN_EDGES_WEBHOOK_SECRET"):
        ServeConfig.from_env({}).require_a_secret()



# ---- manifests that need the receiver ----------------------------------------------------------

HOOK_URL = ("https://hooks.example.com/hooks/linkedapi/$SEQRUN_LINKEDAPI_WEBHOOK_SECRET/"
            "workflows/hooked")


def _hooked(webhook: str = HOOK_URL) -> Workflow:
    return Workflow(Metadata("hooked"), "linkedapi",
                    (WorkflowNode("st.checkConnectionStatus", {"personUrl": "https://x/in/a"}),),
                    result_handling="hook", api="account", webhook=webhook)


def _inbox(url: str = "https://hooks.example.com/hooks/edges/callbacks",
           header: str = "$SEQRUN_EDGES_WEBHOOK_SECRET") -> Schedule:
    return Schedule(Metadata("inbox"), "edges", "linkedin-extract-conversations",
                    ("ident-alice",), cron="0 * * * *",
                    callback=Callback(url, {SECRET_HEADER: header}))


def test_plan_warns_when_a_manifest_needs_a_receiver_that_is_not_configured() -> None:
    both = {"SEQRUN_EDGES_WEBHOOK_SECRET": EDGES, "SEQRUN_LINKEDAPI_WEBHOOK_SECRET": LINKEDAPI}
    assert receiver_warnings([_hooked(), _inbox()], both) == []
    none = receiver_warnings([_hooked(), _inbox()], {})
    assert [w.split(":")[0] for w in none] == ["Workflow hooked", "Schedule inbox"]
    assert "SEQRUN_LINKEDAPI_WEBHOOK_SECRET set" in none[0]
    assert "SEQRUN_EDGES_WEBHOOK_SECRET set" in none[1]
    elsewhere = receiver_warnings(
        [_hooked("https://elsewhere.example.com/x"), _inbox(header="literal")], both)
    assert "its webhook is not the receiver's" in elsewhere[0]
    assert "its callback is not the receiver's" in elsewhere[1]


def test_plan_json_carries_the_warnings(cli_dir: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEQRUN_LINKEDAPI_WEBHOOK_SECRET", raising=False)
    path = cli_dir / "hooked.yaml"
    path.write_text(HOOKED_YAML, encoding="utf-8")
    assert main(["plan", str(path), "--sandbox", "-o", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["warnings"] == [
        "Workflow hooked: result_handling: hook needs `seqrun serve` with "
        "SEQRUN_LINKEDAPI_WEBHOOK_SECRET set; until a result arrives it stays running"]


HOOKED_YAML = f"""\
apiVersion: seqrun/v1
kind: Workflow
metadata:
  name: hooked
spec:
  provider: linkedapi
  api: account
  result_handling: hook
  webhook: {HOOK_URL}
  steps:
    action: st.checkConnectionStatus
    with:
      personUrl: https://www.linkedin.com/in/ada-lovelace-0001
"""


def test_placeholders_are_expanded_when_sent_and_never_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SEQRUN_EDGES_WEBHOOK_SECRET", EDGES)
    config = desired_config(_inbox())
    assert config["callback"]["headers"] == {SECRET_HEADER: EDGES}  # what Edges gets
    assert EDGES not in json.dumps(redact(config))  # what the store keeps
    monkeypatch.setenv("SEQRUN_LINKEDAPI_WEBHOOK_SECRET", LINKEDAPI)
    sent = expand_webhook(HOOK_URL)
    assert sent == HOOK_URL.replace("$SEQRUN_LINKEDAPI_WEBHOOK_SECRET", LINKEDAPI)
    assert mask_webhook(sent) == HOOK_URL
    monkeypatch.delenv("SEQRUN_EDGES_WEBHOOK_SECRET")
    with pytest.raises(ConfigError, match=r"names \$SEQRUN_EDGES_WEBHOOK_SECRET"):
        desired_config(_inbox())


@pytest.mark.parametrize("field,value", [("results", 1), ("results", {"data": []}),
                                         ("data", "text"), ("data", 1)])
async def test_a_callback_whose_lists_are_not_lists_is_400_and_not_recorded(
    client: httpx.AsyncClient, store: Store, field: str, value: object
) -> None:
    r = await client.post("/hooks/edges/callbacks", json={**CALLBACK, field: value}, headers=GOOD)
    assert r.status_code == 400 and f"{field} must be a" in r.text
    assert inbound_events(store) == []


async def test_an_action_callback_whose_data_is_its_output_object_is_recorded(
    client: httpx.AsyncClient, store: Store
) -> None:
    # a visit's (or any non-list action's) callback carries its output object as `data`:
    # refusing it failed every async campaign's callback (each then polled)
    r = await client.post("/hooks/edges/callbacks", headers=GOOD,
                          json={**CALLBACK, "data": {"linkedin_profile_url": "x"}})
    assert r.status_code == 200
    assert len(inbound_events(store)) == 1
