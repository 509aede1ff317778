"""The Edges surface the seeds and providers.md name beyond outreach: callbacks retried with
backoff and HTTPS-only, the seed's migration body with ``callback: {}``, identity creation,
integration webhooks over the API, accept-invitation, received invitations, people and
contact extraction, find-profile-url."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import pytest

from engine.clock import VirtualClock
from engine.sandbox import Sandbox
from engine.sandbox.edges.callbacks import MAX_RETRIES
from engine.sandbox.world import World
from tests.conftest import quiet_config

ADA = "https://www.linkedin.com/in/ada"


def _world() -> World:
    config = quiet_config()
    w = World(VirtualClock(), seed=3, config=config)
    w.add_identity("ident-alice", name="Alice Martin", type="engagement", provider="edges")
    w.add_profile(ADA, full_name="Ada Lovelace", first_name="Ada", company="Engines")
    return w


class Receiver:
    """A callback receiver failing its first ``failures`` deliveries."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.bodies: list[Any] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content))
        if len(self.bodies) <= self.failures:
            return httpx.Response(503)
        return httpx.Response(200)


async def _async_run(box: Sandbox, url: str) -> httpx.Response:
    async with box.client("edges") as c:
        return await c.post("actions/linkedin-me/run/async", json={
            "identity_ids": ["ident-alice"], "inputs": [{}],
            "callback": {"url": url, "on": "final"}})


@pytest.mark.parametrize("failures", [2, MAX_RETRIES + 3])
async def test_a_failed_callback_is_retried_with_backoff(failures: int) -> None:
    receiver = Receiver(failures)
    async with httpx.AsyncClient(transport=httpx.MockTransport(receiver)) as hooks:
        world = _world()
        box = Sandbox(world, callback_client=hooks)
        assert (await _async_run(box, "https://hooks.example/c")).status_code == 201
        await box.tick()
        assert len(receiver.bodies) == 1
        clock = world.clock
        assert isinstance(clock, VirtualClock)
        waits = []
        for _ in range(MAX_RETRIES + 2):
            (entry,) = world.api_state["edges"]["callbacks"]
            if entry["status"] != "PENDING":
                break
            waits.append(entry["next_attempt_at"])
            clock.advance(timedelta(seconds=29))
            await box.tick()
            assert entry["status"] == "PENDING"  # not before its backoff is over
            clock.advance(timedelta(minutes=10))
            await box.tick()
    (entry,) = world.api_state["edges"]["callbacks"]
    refs = {b["callback_ref_uid"] for b in receiver.bodies}
    assert len(refs) == 1  # the receiver's dedupe key is stable across retries
    if failures == 2:
        assert entry["status"] == "SUCCESS" and entry["retry_count"] == 2
        assert len(receiver.bodies) == 3
    else:
        assert entry["status"] == "FAILED" and entry["retry_count"] == MAX_RETRIES
        assert len(receiver.bodies) == MAX_RETRIES + 1


@pytest.mark.parametrize(("url", "ok"), [
    ("https://hooks.example/c", True), ("http://127.0.0.1:9000/c", True),
    ("http://localhost/c", True), ("http://hooks.example/c", False),
    ("ftp://hooks.example/c", False), ("hooks.example/c", False), ("", False)])
async def test_callback_urls_are_https_or_loopback_http(url: str, ok: bool) -> None:
    r = await _async_run(Sandbox(_world()), url)
    assert (r.status_code == 201) is ok, r.text
    if not ok:
        assert r.json()["error_label"] == "BAD_PARAMETERS"


async def test_the_seed_migration_body_with_an_empty_callback_is_accepted() -> None:
    """Seed 000 recreates a schedule with ``callback: schedule.callback ?? {}``."""
    box = Sandbox(_world())
    async with box.client("edges") as c:
        body = {"inputs": [{"linkedin_thread_url": "2-x"}], "callback": {},
                "identity_ids": ["ident-alice"], "cron": "0 9 * * *", "timezone": "Europe/Paris",
                "schedule_at": None, "parameters": {"sync_mode": "incremental"}}
        r = await c.post("actions/linkedin-extract-messages/run/schedule", json=body)
        assert r.status_code == 201, r.text
        assert r.json()["callback"] is None


async def test_an_identity_is_created_through_the_api() -> None:
    box = Sandbox(_world())
    async with box.client("edges") as c:
        r = await c.post("identities", json={"name": "Erin New", "is_engagement": True})
        assert r.status_code == 201, r.text
        created = r.json()
        assert created["type"] == "engagement" and created["is_engagement"] is True
        listed = (await c.get("identities", params={"type": "engagement"})).json()
        assert created["uid"] in {i["uid"] for i in listed}
        me = await c.post("actions/linkedin-me/run/live",
                          json={"input": {}, "identity_ids": [created["uid"]]})
        assert me.status_code == 200 and me.json()["full_name"] == "Erin New"
        bad = await c.post("identities", json={"is_engagement": "yes"})
        assert bad.status_code == 400


async def test_integration_webhooks_are_registered_through_the_api() -> None:
    receiver = Receiver(0)
    async with httpx.AsyncClient(transport=httpx.MockTransport(receiver)) as hooks:
        world = _world()
        box = Sandbox(world, callback_client=hooks)
        async with box.client("edges") as c:
            refused = await c.post("integrations/linkedin/webhooks",
                                   json={"url": "http://hooks.example/i"})
            assert refused.status_code == 400
            r = await c.post("integrations/linkedin/webhooks",
                             json={"url": "https://hooks.example/i"})
            assert r.status_code == 201, r.text
            assert [h["url"] for h in (await c.get("integrations/linkedin/webhooks")).json()] \
                == ["https://hooks.example/i"]
            world.set_auth("ident-alice", False)
            await box.tick()
    assert [b["event"] for b in receiver.bodies] == ["AUTH_EXPIRED"]


async def _live(box: Sandbox, action: str, input: dict[str, Any],
                identity: bool = True) -> httpx.Response:
    body: dict[str, Any] = {"input": input}
    if identity:
        body["identity_ids"] = ["ident-alice"]
    async with box.client("edges") as c:
        return await c.post(f"actions/{action}/run/live", json=body)


async def test_the_other_documented_actions_answer() -> None:
    box = Sandbox(_world())
    people = await _live(box, "linkedin-extract-people", {"linkedin_profile_url": ADA})
    assert people.status_code == 200 and people.json()["full_name"] == "Ada Lovelace"
    contact = await _live(box, "linkedin-extract-contact", {"linkedin_profile_url": ADA})
    assert contact.status_code == 200 and contact.json()["emails"]
    found = await _live(box, "linkedin-find-profile-url", {"full_name": "Ada Lovelace"},
                        identity=False)
    assert found.status_code == 200 and found.json()["linkedin_profile_url"] == ADA
    missing = await _live(box, "linkedin-find-profile-url", {"full_name": "Nobody Atall"},
                          identity=False)
    assert missing.json()["error_label"] == "NO_RESULT"
    received = await _live(box, "linkedin-extract-received-invitations", {})
    assert received.status_code == 200 and received.json() == []
    accept = await _live(box, "linkedin-accept-invitation", {"linkedin_profile_url": ADA})
    assert accept.status_code == 424 and accept.json()["error_label"] == "NO_RESULT"
