"""A LinkedAPI submission whose answer was lost: did the workflow run? Asked of the world.

LinkedAPI has no endpoint listing an account's workflows (``../shared/providers.md`` §2.2),
so a lost submission cannot be looked up: it may sit ``pending`` behind the account's 10
unfinished workflows for a long time. :func:`reconcile` waits as long as the workflow could
take, then probes each effectful node of the body (connection status, conversation) and
decides whether it is safe to submit again.

Example::

    outcome = await reconcile(run, provider, body, reconcile_after=3600.0)
    if outcome is None:
        ...  # nothing happened: submit again
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from engine.errors import ProviderError
from engine.providers.linkedapi.actions import LinkedApiProvider
from engine.run.workflow_record import RunRecord, parse_time
from engine.run.workflow_results import WorkflowResult
from engine.vocab import TRANSIENT_LABELS

PROBE_ATTEMPTS = 6
# Actions with an effect on LinkedIn: the ones a blind resubmission could duplicate.
EFFECTFUL = frozenset(
    {"st.sendConnectionRequest", "st.sendMessage", "st.withdrawConnectionRequest"}
)

Effect = tuple[str, str, Mapping[str, Any]]  # (action type, person URL, node)


def effects(body: Any, person: str | None = None) -> list[Effect]:
    """(action type, person URL, node) of every effectful node of a workflow body."""
    out: list[Effect] = []
    nodes = body if isinstance(body, list) else [body]
    for node in nodes:
        if not isinstance(node, Mapping):
            continue
        url = str(node.get("personUrl") or person or "")
        if node.get("actionType") in EFFECTFUL and url:
            out.append((str(node["actionType"]), url, node))
        then = node.get("then")
        if then:
            out.extend(effects(then, url or None))
    return out


def normalize_text(value: Any) -> str:
    """A message text as LinkedIn may give it back: runs of whitespace (newlines, tabs,
    non-breaking spaces) collapsed to one space, ends trimmed."""
    return " ".join(str(value or "").split())


async def reconcile(
    run: RunRecord, provider: LinkedApiProvider, body: Any, reconcile_after: float
) -> WorkflowResult | None:
    """The POST of ``body`` was lost: wait as long as the workflow could take, then ask the
    world whether its effects happened. None means nothing happened: submit again.

    The guard is the wait, counted from the last submission attempt (``reconcile_after``,
    default 1 h, ``SEQRUN_LINKEDAPI_RECONCILE_AFTER`` seconds): no resubmission before it has
    passed, so a run interrupted and resumed later waits only what is left. Then:

    * every effect observed -> ``completed`` (reconciled);
    * none observed -> None (submit again; a read-only workflow resubmits at once);
    * some but not all -> the record is ``running`` (phase ``unknown``) and is never
      resubmitted: the workflow ran, or is running, and a second one could duplicate the
      effects already seen; the note names what was and was not observed, and the next
      run checks again.
    """
    wanted = effects(body)
    if not wanted:
        return None  # read-only: a second run duplicates nothing
    await _wait_out(run, reconcile_after)
    since = parse_time(run.record.get("first_intent_at"))
    if since is not None:
        since -= timedelta(minutes=5)  # tolerate clock skew between us and LinkedAPI
    observed: list[str] = []
    missing: list[str] = []
    for kind, url, node in wanted:
        seen = await _probe(run, provider, kind, url, node, since)
        (observed if seen else missing).append(f"{kind} {url}")
    return _conclude(run, observed, missing)


async def _wait_out(run: RunRecord, reconcile_after: float) -> None:
    """Sleep what is left of ``reconcile_after`` since the last submission attempt."""
    intent = parse_time(run.record.get("intent_at")) or parse_time(
        run.record.get("first_intent_at")
    )
    if intent is not None:
        remaining = reconcile_after - (run.clock.now() - intent).total_seconds()
    else:
        remaining = reconcile_after
    if remaining > 0:
        wake = run.clock.now() + timedelta(seconds=remaining)
        run.save(
            phase="unknown",
            note="submission answer lost; the world is checked at "
            f"{wake.isoformat(timespec='seconds')} (the workflow may be queued at LinkedAPI)",
        )
        await run.clock.sleep(remaining)


def _conclude(run: RunRecord, observed: list[str], missing: list[str]) -> WorkflowResult | None:
    if not observed:
        run.save(note="no effect observed in the world: submitting again")
        return None
    if missing:
        note = (
            "the submission's answer was lost; observed in the world: "
            + "; ".join(observed)
            + "; not (yet) observed: "
            + "; ".join(missing)
            + ". Not resubmitted (it would duplicate what was observed); state unknown,"
            " checked again on the next run"
        )
        run.save(state="running", phase="unknown", reconciled=False, note=note)
        return run.running(note)
    run.save(reconciled=True)
    return run.finish(
        "completed",
        note="the submission's answer was lost; observed in the world: " + "; ".join(observed),
    )


async def _probe(
    run: RunRecord,
    provider: LinkedApiProvider,
    kind: str,
    url: str,
    node: Mapping[str, Any],
    since: datetime | None,
) -> bool:
    """:func:`_observed`, retrying transient failures; a lasting one propagates and the
    record stays pending (the next run reconciles again, still without resubmitting)."""
    delay = provider.workflows.poll_interval
    for attempt in range(PROBE_ATTEMPTS):
        try:
            return await _observed(provider, run.identity, kind, url, node, since)
        except ProviderError as exc:
            if exc.label not in TRANSIENT_LABELS or attempt == PROBE_ATTEMPTS - 1:
                raise
            await run.clock.sleep(max(delay, exc.retry_after or 0.0))
            delay = min(provider.workflows.max_poll_interval, delay * 2)
    raise AssertionError("unreachable")


async def _observed(
    provider: LinkedApiProvider,
    identity: str | None,
    kind: str,
    url: str,
    node: Mapping[str, Any],
    since: datetime | None,
) -> bool:
    if kind == "st.sendMessage":
        return await _message_sent(provider, identity, url, node.get("text"), since)
    completion = await provider.execute(
        {"actionType": "st.checkConnectionStatus", "personUrl": url}, identity
    )
    item = completion[0] if isinstance(completion, list) else completion
    status = (
        (item.get("data") or {}).get("connectionStatus") if isinstance(item, Mapping) else None
    )
    if kind == "st.sendConnectionRequest":
        return status in ("pending", "connected")
    return status is not None and status != "pending"  # withdraw


async def _message_sent(
    provider: LinkedApiProvider,
    identity: str | None,
    url: str,
    text: Any,
    since: datetime | None,
) -> bool:
    """Whether the conversation with ``url`` holds our message ``text`` (sent since)."""
    for conv in await provider.poll_conversations(identity, [url]):
        for msg in conv.get("messages") or []:
            at = parse_time(msg.get("time"))
            if (
                msg.get("sender") == "us"
                and normalize_text(msg.get("text")) == normalize_text(text)
                and (since is None or at is None or at >= since)
            ):
                return True
    return False
