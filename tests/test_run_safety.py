"""Exactly once under slow providers, crashes, lost locks and refused keys: the runner against
the embedded sandbox through the real Edges adapter (ground truth: ``world.delivered``)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.clock import VirtualClock
from engine.compile.machine import compile_sequence
from engine.model import ActionStep, Metadata, Sequence, Step
from engine.providers.edges.actions import EdgesProvider
from engine.run.runner import Runner
from engine.sandbox import Sandbox
from engine.store import Store

MONDAY_8 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
ID = "ident-alice"
URL = "https://www.linkedin.com/in/slow-lead"
MESSAGE = "linkedin-message-profile"


class Crash(BaseException):
    """The process dies (nothing may swallow it)."""


class LateTransport(httpx.AsyncBaseTransport):
    """Forwards to the sandbox, except the first ``times`` calls of ``slug``: those fail at
    once (a client TIMEOUT, or ``crash``) and reach the sandbox only ``lag`` later, on the
    first request after that (a provider still executing when the client gave up)."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        clock: VirtualClock,
        slug: str,
        lag: timedelta = timedelta(minutes=3),
        *,
        times: int = 1,
        crash: bool = False,
    ) -> None:
        self.inner, self.clock, self.slug, self.lag = inner, clock, slug, lag
        self.times, self.crash = times, crash
        self.held: list[tuple[datetime, httpx.Request]] = []
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self.land()
        if request.url.path.endswith(f"/actions/{self.slug}/run/live"):
            self.calls += 1
            if self.times > 0:
                self.times -= 1
                await request.aread()
                self.held.append((self.clock.now() + self.lag, request))
                if self.crash:
                    raise Crash
                raise httpx.ReadTimeout("the provider is still working", request=request)
        return await self.inner.handle_async_request(request)

    async def land(self, *, everything: bool = False) -> None:
        keep: list[tuple[datetime, httpx.Request]] = []
        for at, request in self.held:
            if everything or at <= self.clock.now():
                await self.inner.handle_async_request(request)
            else:
                keep.append((at, request))
        self.held = keep


class Env:
    def __init__(self, tmp: Path, steps: tuple[Step, ...], **profile: Any) -> None:
        self.clock = VirtualClock(MONDAY_8)
        self.sandbox = Sandbox.open(None, clock=self.clock, profiles=0)
        self.world = self.sandbox.world
        self.world.add_profile(URL, first_name="Slow", replies=False, **profile)
        self.store = Store.open(None, tmp)
        seq = Sequence(
            metadata=Metadata("safety"),
            provider="edges",
            identities=(ID,),
            steps=steps,
            cooldown=None,
            normalized={"name": "safety"},
        )
        self.compiled = compile_sequence(seq)
        self.store.put_revision(self.compiled.revision, seq.name, "Sequence", {"n": seq.name})
        self.store.put_sequence(seq.name, "Sequence", "edges", self.compiled.revision)
        lead = self.store.upsert_lead(URL, {"first_name": "Slow"})
        eid = self.store.enroll(
            lead, seq.name, self.compiled.revision, ID, self.compiled.initial, self.clock.now()
        )
        assert eid is not None
        self.eid = eid

    def client(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        return httpx.AsyncClient(
            transport=transport or self.sandbox.transport,
            base_url=self.sandbox.base_url("edges") + "/",
            headers={**self.sandbox.headers("edges"), **(headers or {})},
        )

    def runner(self, transport: httpx.AsyncBaseTransport | None = None, **kw: Any) -> Runner:
        provider = EdgesProvider(self.client(transport))
        compiled = {self.compiled.revision: self.compiled}
        return Runner(self.store, {"edges": provider}, self.clock, compiled=compiled, **kw)

    def state(self) -> str:
        row = self.store.get_enrollment(self.eid)
        assert row is not None
        return row.state


def message_steps() -> tuple[Step, ...]:
    return (ActionStep("intro", "send_message", with_={"text": "Hello Slow"}),)


# ---- 1. an attempt whose outcome is unknown is never followed by a blind resend --------------


async def test_a_slow_but_successful_timeout_is_not_resent(tmp_path: Path) -> None:
    env = Env(tmp_path, message_steps(), already_connected_with=[ID])
    late = LateTransport(env.sandbox.transport, env.clock, MESSAGE)
    await env.runner(late).run_until(MONDAY_8 + timedelta(days=1))
    await late.land(everything=True)  # whatever is still in flight lands now
    assert len(env.world.messages_to(ID, URL)) == 1  # ground truth: delivered once
    assert late.calls == 1
    assert env.state() == "completed"


async def test_a_timeout_that_never_lands_is_retried_after_the_settle_window(
    tmp_path: Path,
) -> None:
    env = Env(tmp_path, message_steps(), already_connected_with=[ID])
    late = LateTransport(env.sandbox.transport, env.clock, MESSAGE)
    runner = env.runner(late, settle_after=timedelta(minutes=5))
    await runner.tick()
    late.held.clear()  # the first call is lost for good
    row = env.store.get_enrollment(env.eid)
    assert row is not None and row.next_due_at is not None
    assert row.next_due_at >= MONDAY_8 + timedelta(minutes=5)  # no retry inside the window
    await runner.run_until(MONDAY_8 + timedelta(days=1))
    assert len(env.world.messages_to(ID, URL)) == 1 and late.calls == 2
    assert env.state() == "completed"
    statuses = [a.status for a in env.store.actions(enrollment_id=env.eid)]
    assert statuses == ["unknown", "done"]


async def test_a_call_in_flight_at_a_crash_is_not_resent_by_the_next_process(
    tmp_path: Path,
) -> None:
    env = Env(tmp_path, message_steps(), already_connected_with=[ID])
    late = LateTransport(env.sandbox.transport, env.clock, MESSAGE, crash=True)
    with pytest.raises(Crash):
        await env.runner(late).tick()
    assert len(env.store.pending_intents()) == 1
    await env.runner(late).run_until(MONDAY_8 + timedelta(days=1))  # a new process
    await late.land(everything=True)
    assert len(env.world.messages_to(ID, URL)) == 1
    assert env.state() == "completed" and env.store.pending_intents() == []


async def test_a_slow_invitation_is_not_sent_twice(tmp_path: Path) -> None:
    env = Env(tmp_path, (ActionStep("connect", "connect", with_={"note": "Hi"}),))
    late = LateTransport(env.sandbox.transport, env.clock, "linkedin-connect-profile")
    await env.runner(late).run_until(MONDAY_8 + timedelta(days=1))
    await late.land(everything=True)
    assert env.world.count(ID, "invite") == 1
    assert env.state() == "completed"


# ---- 3. a refused key is one log line, not a traceback ---------------------------------------


async def test_a_refused_api_key_logs_one_line_without_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = Env(tmp_path, message_steps(), already_connected_with=[ID])
    provider = EdgesProvider(env.client(headers={"X-API-Key": "wrong-key"}))
    runner = Runner(
        env.store, {"edges": provider}, env.clock, compiled={env.compiled.revision: env.compiled}
    )
    caplog.set_level(logging.INFO, logger="engine")
    result = await runner.tick()
    assert result.errors and "EDGES_API_KEY" in result.errors[0]
    assert "Traceback" not in caplog.text
    failures = [r for r in caplog.records if "tick failed" in r.getMessage()]
    assert failures and not any(r.exc_info for r in failures)
    assert "EDGES_API_KEY" in failures[0].getMessage()
    assert "wrong-key" not in caplog.text


# ---- 5. a reconciliation that cannot look is never silent ------------------------------------


class NoSentInvitations(httpx.AsyncBaseTransport):
    """The sandbox, minus ``linkedin-extract-sent-invitations`` (an API that lacks it)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/actions/linkedin-extract-sent-invitations/run/live"):
            return httpx.Response(404, json={"message": "no such action"}, request=request)
        return await self.inner.handle_async_request(request)


def unverified(env: Env) -> list[Any]:
    from engine.views.why import why

    entries = why(env.store, URL).to_json()["history"]
    return [e for e in entries if e.get("kind") == "reconciled-unverified"]


async def test_a_visit_whose_answer_was_lost_is_made_again_not_counted_done(
    tmp_path: Path,
) -> None:
    env = Env(tmp_path, (ActionStep("visit", "visit_profile"),))
    late = LateTransport(env.sandbox.transport, env.clock, "linkedin-visit-profile")
    await env.runner(late).tick()
    assert env.state() == "visit"  # not counted done: nothing shows it happened
    await env.runner(late).run_until(MONDAY_8 + timedelta(days=1))
    assert env.state() == "completed"
    first, second = env.store.actions(enrollment_id=env.eid)
    assert (first.status, first.label) == ("unknown", "NOT_DONE")
    assert (second.status, second.label) == ("done", "ok")
    assert unverified(env) == []  # the second visit was seen: nothing unverified


async def test_an_inaccessible_profile_whose_visit_was_killed_in_flight_is_removed(
    tmp_path: Path,
) -> None:
    # a visit counted done unseen sent the lead on as visited; a step reading the
    # connection list afterwards never learnt the profile was inaccessible
    env = Env(
        tmp_path,
        (ActionStep("visit", "visit_profile"), ActionStep("check", "check_connection")),
        accessible=False,
    )
    crash = CrashOn(env.sandbox.transport, "linkedin-visit-profile", nth=1)
    with pytest.raises(Crash):
        await env.runner(crash).tick()
    await env.runner().run_until(MONDAY_8 + timedelta(days=1))  # a new process
    assert env.state() == "removed"
    labels = [(a.status, a.label) for a in env.store.actions(enrollment_id=env.eid)]
    assert labels == [("unknown", "NOT_DONE"), ("failed", "PROFILE_NOT_ACCESSIBLE")]


async def unchecked_withdraw(tmp_path: Path) -> Env:
    """A withdraw whose answer is lost, on an API that cannot list sent invitations: it is
    settled done without evidence."""
    env = Env(tmp_path, (ActionStep("withdraw", "withdraw_invitation"),))
    env.world.connect(ID, URL)  # an invitation is pending
    late = LateTransport(
        NoSentInvitations(env.sandbox.transport), env.clock, "linkedin-withdraw-invitation"
    )
    await env.runner(late).tick()
    return env


async def test_a_withdraw_that_cannot_be_checked_says_so_in_why(tmp_path: Path) -> None:
    env = await unchecked_withdraw(tmp_path)
    assert env.state() == "completed"
    (entry,) = unverified(env)
    assert "sent invitations" in str(entry)


# ---- 2. the run lock lives as long as its runner, and guards its calls in flight -------------


class Gate(httpx.AsyncBaseTransport):
    """Forwards to the sandbox; the first call of ``slug`` waits until ``opened`` is set."""

    def __init__(self, inner: httpx.AsyncBaseTransport, slug: str) -> None:
        import asyncio

        self.inner, self.slug = inner, slug
        self.entered, self.opened = asyncio.Event(), asyncio.Event()
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith(f"/actions/{self.slug}/run/live"):
            self.calls += 1
            if self.calls == 1:
                self.entered.set()
                await self.opened.wait()
        return await self.inner.handle_async_request(request)


async def test_a_second_runner_cannot_act_on_the_first_runners_calls_in_flight(
    tmp_path: Path,
) -> None:
    import asyncio

    from engine.errors import LockError

    env = Env(tmp_path, message_steps(), already_connected_with=[ID])
    gate = Gate(env.sandbox.transport, MESSAGE)
    first, second = env.runner(gate), env.runner()

    async def run_first() -> None:
        async with first.hold_run_lock(timedelta(seconds=1)):
            await first.tick()

    task = asyncio.ensure_future(run_first())
    await asyncio.wait_for(gate.entered.wait(), 5)  # the first runner's call is in flight
    await asyncio.sleep(1.6)  # past the lock's TTL: it was refreshed meanwhile
    with pytest.raises(LockError):
        async with second.hold_run_lock(timedelta(seconds=0.2)):
            pass
    env.clock.advance(timedelta(hours=1))  # even long after the intent
    result = await second.tick()  # a runner that ignores the lock: still hands off
    assert (result.recovered, result.postponed, result.actions) == (0, 0, 0)
    (intent,) = env.store.pending_intents()
    assert intent.status == "intent"
    gate.opened.set()
    await asyncio.wait_for(task, 5)
    assert len(env.world.messages_to(ID, URL)) == 1 and gate.calls == 1
    assert env.state() == "completed" and env.store.pending_intents() == []


async def test_a_runner_that_lost_its_lock_makes_no_further_call(tmp_path: Path) -> None:
    import asyncio

    from engine.errors import LockError
    from engine.store import tables as schema

    env = Env(tmp_path, message_steps(), already_connected_with=[ID])
    other = "https://www.linkedin.com/in/other-lead"
    env.world.add_profile(other, first_name="Other", replies=False, already_connected_with=[ID])
    lead = env.store.upsert_lead(other, {"first_name": "Other"})
    env.store.enroll(lead, "safety", env.compiled.revision, ID, "intro", env.clock.now())
    gate = Gate(env.sandbox.transport, MESSAGE)
    first = env.runner(gate)

    async def run_first() -> None:
        async with first.hold_run_lock(timedelta(seconds=0.2)):
            await first.tick()

    task = asyncio.ensure_future(run_first())
    await asyncio.wait_for(gate.entered.wait(), 5)
    with env.store.transaction() as conn:  # the lock expired and another runner took it
        conn.execute(schema.locks.delete())
    with env.store.lock("run", ttl=timedelta(minutes=5)):
        for _ in range(100):  # the first runner's refresh finds it gone
            await asyncio.sleep(0.05)
            if first._lock_lost:
                break
        gate.opened.set()
        with pytest.raises(LockError):
            await asyncio.wait_for(task, 5)
    assert gate.calls == 1  # the call in flight finished; the next one was never made
    assert len(env.world.deliveries(ID, kind="message")) == 1
    # the call made is recorded; the one not made has no intent (nothing for recover())
    assert env.store.pending_intents() == []
    assert [a.status for a in env.store.actions()] == ["done"]


# ---- 6. reconciling a connect tells "our invitation was accepted" from "connected before" -----


async def test_a_connect_killed_in_flight_to_a_connected_lead_takes_the_already_connected_route(
    tmp_path: Path,
) -> None:
    steps = (
        ActionStep("connect", "connect", with_={"note": "Hi"},
                   on={"ALREADY_CONNECTED": "hello"}, next="completed"),
        ActionStep("hello", "send_message", with_={"text": "Hello again"}, next="completed"),
    )
    env = Env(tmp_path, steps, already_connected_with=[ID])
    late = LateTransport(env.sandbox.transport, env.clock, "linkedin-connect-profile", crash=True)
    with pytest.raises(Crash):
        await env.runner(late).tick()
    await late.land(everything=True)  # the provider answered ALREADY_CONNECTED to the dead one
    env.clock.advance(timedelta(minutes=1))
    await env.runner(late).run_until(MONDAY_8 + timedelta(days=1))  # a new process
    assert env.world.count(ID, "invite") == 0
    assert len(env.world.messages_to(ID, URL)) == 1  # the manifest's ALREADY_CONNECTED route
    assert env.state() == "completed"
    connect = [a for a in env.store.actions(enrollment_id=env.eid) if a.action == "connect"]
    assert [(a.status, a.label) for a in connect] == [("failed", "ALREADY_CONNECTED")]


# ---- 7. a loop of routes makes progress or stops the lead with the loop as its reason --------


def _loop_steps() -> tuple[Step, ...]:
    return (
        ActionStep("connect", "connect", with_={"note": "Hi"},
                   on={"ALREADY_CONNECTED": "intro"}, next="completed"),
        ActionStep("intro", "send_message", with_={"text": "Hello"},
                   on={"NOT_CONNECTED": "connect"}, next="completed"),
    )


class RefuseMessages(httpx.AsyncBaseTransport):
    """The sandbox, but every message is refused NOT_CONNECTED (a provider whose connection
    list and messaging disagree)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner, self.messages = inner, 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith(f"/actions/{MESSAGE}/run/live"):
            self.messages += 1
            return httpx.Response(400, json={"error_label": "NOT_CONNECTED",
                                             "message": "not connected"})
        return await self.inner.handle_async_request(request)


async def test_a_removed_connection_is_invited_again_not_messaged_in_a_loop(
    tmp_path: Path,
) -> None:
    env = Env(tmp_path, _loop_steps())
    # the cache still says connected: the lead accepted once, then removed the connection
    env.store.put_connection(ID, URL, "connected", at=MONDAY_8 - timedelta(days=30))
    await env.runner().tick()
    assert env.world.count(ID, "invite") == 1  # invited again after the refused message
    assert len(env.world.messages_to(ID, URL)) == 0
    assert env.state() == "completed"


async def test_a_loop_of_refusals_ends_in_failed_with_the_loop_as_reason(tmp_path: Path) -> None:
    env = Env(tmp_path, _loop_steps(), already_connected_with=[ID])
    refusing = RefuseMessages(env.sandbox.transport)
    await env.runner(refusing).run_until(MONDAY_8 + timedelta(days=2))
    assert refusing.messages == 1  # not 25 a tick, every tick (connect answered twice)
    row = env.store.get_enrollment(env.eid)
    assert row is not None and row.state == "failed"
    assert row.last_error is not None and "routing loop without progress" in row.last_error
    assert row.last_error.endswith(
        "connect -ALREADY_CONNECTED-> intro -NOT_CONNECTED-> connect -ALREADY_CONNECTED-> intro"
    )


class StaleConnections(httpx.AsyncBaseTransport):
    """The sandbox, but the connection list still shows the lead connected a year ago (a
    provider's view from before the lead removed the connection)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/actions/linkedin-extract-connections/run/live"):
            return httpx.Response(200, json=[{"linkedin_profile_url": URL,
                                              "connected_at": "2025-01-05T08:00:00Z"}])
        return await self.inner.handle_async_request(request)


async def test_a_connection_seen_gone_is_not_taken_for_connected_before_the_invitation(
    tmp_path: Path,
) -> None:
    env = Env(tmp_path, _loop_steps())
    # this runner saw the connection gone (a message refused NOT_CONNECTED) after its date
    env.store.put_connection(ID, URL, "not_connected", at=MONDAY_8 - timedelta(days=1))
    late = LateTransport(env.sandbox.transport, env.clock, "linkedin-connect-profile", crash=True)
    with pytest.raises(Crash):
        await env.runner(late).tick()
    await late.land(everything=True)  # the invitation went out
    env.clock.advance(timedelta(minutes=1))
    await env.runner(StaleConnections(env.sandbox.transport)).tick()  # a new process
    assert env.world.count(ID, "invite") == 1
    connect = [a for a in env.store.actions(enrollment_id=env.eid) if a.action == "connect"]
    assert [(a.status, a.label) for a in connect] == [("done", "ok")]
    assert env.state() == "completed"


# ---- 8. each call's outcome is committed as it returns: a kill orphans one call, not a wave --


class CrashOn(httpx.AsyncBaseTransport):
    """Forwards to the sandbox; the ``nth`` call of ``slug`` reaches the provider, then the
    process dies before its answer is read (a SIGKILL mid-wave)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, slug: str, nth: int) -> None:
        self.inner, self.slug, self.nth, self.calls = inner, slug, nth, 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path.endswith(f"/actions/{self.slug}/run/live"):
            self.calls += 1
            if self.calls == self.nth:
                raise Crash
        return response


def _more_leads(env: Env, n: int) -> list[str]:
    urls = [f"https://www.linkedin.com/in/wave-lead-{i}" for i in range(n)]
    for url in urls:
        env.world.add_profile(url, first_name="Wave", replies=False)
        lead = env.store.upsert_lead(url, {"first_name": "Wave"})
        env.store.enroll(lead, "safety", env.compiled.revision, ID, "visit", env.clock.now())
    return urls


async def test_a_kill_mid_wave_orphans_only_the_call_in_flight(tmp_path: Path) -> None:
    env = Env(tmp_path, (ActionStep("visit", "visit_profile"),))
    _more_leads(env, 5)  # six leads due in one wave of one identity
    crash = CrashOn(env.sandbox.transport, "linkedin-visit-profile", nth=4)
    with pytest.raises(Crash):
        await env.runner(crash).tick()
    # the three calls that returned are recorded; only the fourth is open; the last two
    # were never asked for, so no intent of theirs waits either
    assert [a.status for a in env.store.actions()] == ["done", "done", "done", "intent"]
    await env.runner().run_until(MONDAY_8 + timedelta(days=1))  # a new process
    # none lost; only the call in flight is made again (its answer died with the process)
    assert env.world.count(ID, "visit") == 7
    statuses = [a.status for a in env.store.actions()]
    assert statuses.count("done") == 6 and statuses.count("unknown") == 1
    assert not [e for e in env.store.events() if e.kind == "reconciled-unverified"]


# ---- 9. recovery asks once per settle window, identities concurrently -----------------------


class Counting(httpx.AsyncBaseTransport):
    """Forwards to the sandbox and counts the requests."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner, self.requests = inner, 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return await self.inner.handle_async_request(request)


async def test_an_open_intent_is_asked_about_once_per_settle_window_not_every_tick(
    tmp_path: Path,
) -> None:
    env = Env(tmp_path, message_steps(), already_connected_with=[ID])
    late = LateTransport(env.sandbox.transport, env.clock, MESSAGE, crash=True)
    with pytest.raises(Crash):
        await env.runner(late).tick()
    late.held.clear()  # the call died with the process: it never reached the provider
    counting = Counting(env.sandbox.transport)
    runner = env.runner(counting, settle_after=timedelta(minutes=5))  # a new process
    await runner.tick()  # asks once: not there (yet); the lead waits out the window
    asked = counting.requests
    assert asked > 0 and env.store.pending_intents() != []
    for _ in range(4):  # ticks inside the window: the lead is not due, nobody is asked
        env.clock.advance(timedelta(minutes=1))
        await runner.tick()
    assert counting.requests == asked
    env.clock.advance(timedelta(minutes=2))
    await runner.run_until(MONDAY_8 + timedelta(hours=1))  # asked again, settled, resent
    assert len(env.world.messages_to(ID, URL)) == 1
    assert [a.status for a in env.store.actions(enrollment_id=env.eid)] == ["unknown", "done"]


class Rendezvous(httpx.AsyncBaseTransport):
    """Forwards to the sandbox; a request of ``slug`` waits until one of ``identities``
    each has one in flight (serial recovery across identities would never get there)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, slug: str, identities: int) -> None:
        import asyncio

        self.inner, self.slug, self.identities = inner, slug, identities
        self.arrived: set[str] = set()
        self.all_in = asyncio.Event()
        self.waited_in_vain = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        import asyncio

        if request.url.path.endswith(f"/actions/{self.slug}/run/live"):
            body = await request.aread()
            self.arrived.add(body.decode())
            if len(self.arrived) >= self.identities:
                self.all_in.set()
            try:
                await asyncio.wait_for(self.all_in.wait(), 5)  # a guard against a hang
            except TimeoutError:
                self.waited_in_vain = True
        return await self.inner.handle_async_request(request)


async def test_recovery_asks_the_identities_concurrently(tmp_path: Path) -> None:
    env = Env(tmp_path, (ActionStep("connect", "connect", with_={"note": "Hi"}),))
    other, bob = "https://www.linkedin.com/in/other-lead", "ident-bob"
    env.world.add_profile(other, first_name="Other", replies=False)
    lead = env.store.upsert_lead(other, {"first_name": "Other"})
    env.store.enroll(lead, "safety", env.compiled.revision, bob, "connect", env.clock.now())
    late = LateTransport(env.sandbox.transport, env.clock, "linkedin-connect-profile",
                         crash=True, times=2)
    with pytest.raises(Crash):  # each identity's invitation in flight at a crash
        await env.runner(late).tick()
    assert len(env.store.pending_intents()) == 2
    await late.land(everything=True)  # both landed
    env.clock.advance(timedelta(minutes=1))
    meeting = Rendezvous(env.sandbox.transport, "linkedin-extract-connections", 2)
    result = await env.runner(meeting).tick()  # a new process
    assert not meeting.waited_in_vain and result.recovered == 2
    assert env.world.count(ID, "invite") == 1 and env.world.count(bob, "invite") == 1
    assert env.store.pending_intents() == []


# ---- 10. a message whose thread got a reply after it is still found after a crash ------------


async def test_a_message_killed_in_flight_then_replied_to_is_recorded_as_sent(
    tmp_path: Path,
) -> None:
    env = Env(tmp_path, message_steps(), already_connected_with=[ID])
    env.world.profiles[URL].replies = True
    env.world.config.reply_delay_hours = (1.0, 2.0)
    late = LateTransport(env.sandbox.transport, env.clock, MESSAGE, crash=True)
    with pytest.raises(Crash):
        await env.runner(late).tick()
    await late.land(everything=True)  # the message went out; the process that sent it died
    env.clock.advance(timedelta(hours=3))  # the lead replied: the thread's last message
    await env.runner().run_until(MONDAY_8 + timedelta(days=1))  # a new process
    assert len(env.world.messages_to(ID, URL)) == 1
    (message,) = env.store.actions(enrollment_id=env.eid)
    assert (message.status, message.label) == ("done", "ok")  # not "not done"


async def test_status_counts_withdrawals_done_without_evidence_apart(tmp_path: Path) -> None:
    from rich.console import Console

    from engine.cli.render import render_status
    from engine.views.status import status

    env = await unchecked_withdraw(tmp_path)
    report = status(env.store, now=env.clock.now())
    (seq,) = report.sequences
    assert seq.unverified == {"withdraw_invitation": 1}
    (ident,) = report.identities
    assert ident.unverified == {"withdraw_invitation": 1}
    as_json = report.to_json()
    assert as_json["sequences"][0]["unverified"] == {"withdraw_invitation": 1}
    out = Console(record=True, width=200)
    render_status(report, out)
    assert "withdraw_invitation 1" in out.export_text()
