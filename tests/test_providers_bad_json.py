"""Hostile provider bodies (issue 18): 100,000 nested ``[`` made ``json`` raise RecursionError
in run, apply, schedules and workflows. Every provider reads bodies in one place
(engine.providers.http): an unreadable answer is a TIMEOUT ProviderError (the call may have
happened: reconciled, never resent blind), an unreadable error body is mapped on its status."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.clock import VirtualClock
from engine.compile.machine import compile_sequence
from engine.errors import ProviderError
from engine.model import ActionStep, Metadata, Sequence
from engine.providers import REGISTRY
from engine.providers.base import Lead, Provider
from engine.providers.edges import runs, schedules
from engine.providers.http import MAX_DEPTH, read_json
from engine.run.runner import Runner
from engine.store import Store
from engine.vocab import SERVER_ERROR, TIMEOUT

LEAD = Lead("https://www.linkedin.com/in/ana")
DEEP = b"[" * 100_000
BODIES = {
    "deep": DEEP,
    "deep-closed": b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1),  # parses, but too deep
    "deep-object": b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
    "truncated": b'{"result": [1, 2',
    "not-utf8": b"\xff\xfe\x00{",
}
BASES = {"edges": "https://edges.test/v1/", "linkedapi": "https://linkedapi.test/",
         "connectsafely": "https://cs.test/linkedin/"}


def provider(name: str, status: int, body: bytes) -> Provider:
    """The ``name`` adapter on a transport that answers ``body`` with ``status`` to anything."""
    client = httpx.AsyncClient(
        base_url=BASES[name],
        transport=httpx.MockTransport(lambda request: httpx.Response(status, content=body)),
    )
    factory = REGISTRY[name].factory
    assert factory is not None
    return factory(client, clock=VirtualClock())


def calls(p: Provider) -> dict[str, Callable[[], Awaitable[Any]]]:
    """Every Provider method the runner calls, on one identity and lead."""
    return {
        "perform": lambda: p.perform("id-1", "send_message", LEAD, {"text": "hi"}),
        "sync_conversations": lambda: p.sync_conversations("id-1"),
        "relationship": lambda: p.relationship("id-1", LEAD),
        "me": lambda: p.me("id-1"),
        "identity_healthy": lambda: p.identity_healthy("id-1"),
    }


@pytest.mark.parametrize("body", sorted(BODIES))
@pytest.mark.parametrize("name", sorted(BASES))
async def test_an_unreadable_answer_is_a_timeout_never_a_traceback(name: str, body: str) -> None:
    p = provider(name, 200, BODIES[body])
    for method, call in calls(p).items():
        try:
            await call()
        except ProviderError as exc:
            # the answer came but cannot be read: the call may have happened (reconciled)
            assert exc.label == TIMEOUT, (method, exc)
            assert "unreadable answer" in exc.message, (method, exc)
            assert name in exc.message, (method, exc)
        else:  # health reads an unusable body as unhealthy; ConnectSafely's me() calls nothing
            assert method in ("identity_healthy", "me"), method


@pytest.mark.parametrize("name", sorted(BASES))
async def test_an_unreadable_error_body_is_mapped_on_its_status(name: str) -> None:
    p = provider(name, 503, DEEP)
    with pytest.raises(ProviderError) as caught:
        await p.perform("id-1", "send_message", LEAD, {"text": "hi"})
    assert caught.value.label == SERVER_ERROR
    assert caught.value.status == 503


def test_read_json_keeps_shallow_bodies_and_reads_empty_as_none() -> None:
    nested = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    assert read_json(httpx.Response(200, content=nested)) is not None
    assert read_json(httpx.Response(200, content=b"[" + b"{},[]," * 500 + b"1]")) is not None
    assert read_json(httpx.Response(200, content=b"  ")) is None


async def test_edges_schedule_and_run_endpoints_refuse_a_deep_answer() -> None:
    client = httpx.AsyncClient(
        base_url=BASES["edges"],
        transport=httpx.MockTransport(lambda request: httpx.Response(200, content=DEEP)),
    )
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: schedules.list_active_schedules(client, "linkedin-extract-messages"),
        lambda: schedules.get_schedule(client, "sch-1"),
        lambda: schedules.create_schedule(
            client, {"action": "linkedin-extract-messages", "cron": "0 9 * * *",
                     "identity_ids": ["id-1"], "input": {}, "parameters": {},
                     "timezone": "UTC", "name": "x"}),
        lambda: runs.start_async_run(client, "linkedin-extract-messages", {"input": {}}),
        lambda: runs.get_run(client, "run-1"),
        lambda: runs.continue_run(client, "run-1"),
    ]
    for call in calls:
        with pytest.raises(ProviderError, match="unreadable answer") as caught:
            await call()
        assert caught.value.label == TIMEOUT


async def test_linkedapi_workflow_submission_with_a_deep_answer_is_a_timeout() -> None:
    p = provider("linkedapi", 200, DEEP)
    submit = getattr(p, "submit")  # noqa: B009 (LinkedApiProvider's workflow API)
    with pytest.raises(ProviderError, match="unreadable answer") as caught:
        await submit([{"actionType": "st.openPersonPage", "personUrl": LEAD.profile_url}],
                     "id-1")
    assert caught.value.label == TIMEOUT


async def test_a_runner_tick_on_deep_answers_postpones_the_leads(tmp_path: Path) -> None:
    """Through the runner: the tick ends, the lead waits (reconciled later), no traceback."""
    clock = VirtualClock(datetime(2026, 1, 5, 10, tzinfo=UTC))
    seq = Sequence(metadata=Metadata("deep"), provider="edges", identities=("id-1",),
                   steps=(ActionStep("hello", "send_message", with_={"text": "hi"},
                                     next="completed"),),
                   normalized={"deep": True})
    compiled = compile_sequence(seq)
    store = Store.open(None, tmp_path)
    store.put_revision(compiled.revision, seq.name, "Sequence", dict(seq.normalized))
    store.put_sequence(seq.name, "Sequence", "edges", compiled.revision)
    lead = store.upsert_lead(LEAD.profile_url, {"first_name": "Ana"})
    eid = store.enroll(lead, seq.name, compiled.revision, "id-1", compiled.initial, clock.now())
    runner = Runner(store, {"edges": provider("edges", 200, DEEP)}, clock,
                    compiled={compiled.revision: compiled})
    result = await runner.tick()
    enr = next(e for e in store.enrollments() if e.id == eid)
    assert enr.state == "hello" and enr.next_due_at is not None and enr.next_due_at > clock.now()
    assert result.actions == 0
    store.close()
