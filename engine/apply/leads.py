"""Leads in a plan and in the store: which rows of a leads file to enroll (and on which
identity), skip or update, enrolling them in bulk, merging changed data into stored leads,
and ``seqrun leads import`` (a file into an applied sequence, under the ``apply`` lock).

A lead is skipped when it is on the do-not-contact list, or when another sequence holds it
on one of this sequence's identities: an enrollment there, in flight or finished (one
conversation per lead and identity). New leads are spread over the identities
deterministically: each goes to the identity with the fewest enrollments in this sequence,
ties broken by the manifest's order (round-robin from an even start).

Example::

    result = import_leads("more.csv", "founders", store=store, now=clock.now())
    print(result.enrolled, len(result.skipped))
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from operator import attrgetter
from pathlib import Path
from typing import Any, NamedTuple

import sqlalchemy as sa

from engine.apply import APPLY_LOCK, META_NS
from engine.errors import PlanError, Problem
from engine.manifest.leads import CHUNK_ROWS, URL_COLUMN, bulk_collection, read_lead_chunks
from engine.manifest.policy import blocked_reason, policy_from_json
from engine.model import Policy
from engine.store import Store
from engine.store.codecs import dump_json, load_json
from engine.store.rows import Columns
from engine.vocab import POLICY_KEY, SENDS, TERMINALS

# ---- plan objects ---------------------------------------------------------------------------


class EnrollPlan(NamedTuple):
    """A lead to enroll; its data kept as the JSON text the store writes (a plan of a million
    leads held a million dicts: 800 MB, where the texts take a third). A plan of a million
    leads holds a million of them: a NamedTuple (of strings) is cheaper to build than a
    frozen dataclass and leaves the garbage collector's scans after its first one, where a
    dataclass instance was scanned by every collection (~4 s of a million-lead plan)."""

    profile_url: str
    identity: str
    data_json: str = "{}"

    @property
    def data(self) -> Mapping[str, Any]:
        return dict(load_json(self.data_json))


@dataclass(frozen=True)
class LeadUpdate:
    """A lead already enrolled whose CSV row changed: its data is updated in place (the
    steps still to come render with it; nothing sent is touched)."""

    profile_url: str
    changes: Mapping[str, tuple[Any, Any]]  # column -> (stored, from the file)


@dataclass(frozen=True)
class SkipPlan:
    profile_url: str
    reason: str  # do_not_contact | held | one_voice | cap
    detail: str = ""
    sequence: str | None = None  # the holder, for reason == held
    identity: str | None = None



# ---- planning -------------------------------------------------------------------------------


def lead_data(row: Mapping[str, str]) -> dict[str, Any]:
    """A leads-file row as stored lead data (``full_name`` also split into first and last)."""
    data: dict[str, Any] = dict(row)
    data.pop(URL_COLUMN, None)
    full = data.get("full_name", "")
    if full and "first_name" not in data:
        first, _, last = full.partition(" ")
        data["first_name"] = first
        if last and "last_name" not in data:
            data["last_name"] = last
    return data


def _skip(
    url: str,
    held: list[tuple[str, str, str]],
    dnc: Mapping[str, str | None],
    order: Mapping[str, int],
) -> SkipPlan | None:
    """Why a lead not yet in this sequence is skipped (do-not-contact, or held by another
    sequence on one of this sequence's identities), or None."""
    if url in dnc:
        reason = dnc[url] or "on the do-not-contact list"
        return SkipPlan(url, "do_not_contact", reason)
    holder = next(((s, i, st) for s, i, st in held if i in order), None)
    if holder is None:
        return None
    s, i, st = holder
    return SkipPlan(
        url, "held", f"held by sequence {s!r} on identity {i!r} (state {st})",
        sequence=s, identity=i,
    )


def _one_voice(
    url: str,
    sequence: str,
    held: list[tuple[str, str, str]],
    touched: list[tuple[datetime, str, str]],
    policy: Policy,
) -> SkipPlan | None:
    """One lead one voice: in flight in another sequence (any identity), or contacted by
    any identity within the Policy's lookback."""
    flight = next(((s, i, st) for s, i, st in held if s != sequence and st not in TERMINALS),
                  None)
    if flight is not None:
        s, i, st = flight
        detail = f"in flight in sequence {s!r} on identity {i!r} (state {st}): one lead one voice"
        return SkipPlan(url, "one_voice", detail, sequence=s, identity=i)
    if touched:
        at, i, s = touched[-1]
        assert policy.one_voice is not None
        days = policy.one_voice.total_seconds() / 86400
        detail = (
            f"contacted by identity {i!r} (sequence {s!r}) on {at:%Y-%m-%d}, within the "
            f"{days:g}d lookback of policy {policy.name!r}: one lead one voice"
        )
        return SkipPlan(url, "one_voice", detail, sequence=s, identity=i)
    return None


@dataclass(frozen=True)
class Guardrails:
    """What holds leads back when they are planned: the Policy (do-not-contact, one lead one
    voice) and the most new enrollments allowed (``caps.max_enroll``, ``--max-enroll``)."""

    policy: Policy | None = None
    max_new: int | None = None
    now: datetime | None = None
    cap_reason: str = ""


def plan_enrollments(
    store: Store,
    *,
    sequence: str,
    identities: tuple[str, ...],
    rows: Iterable[Mapping[str, str]],
    conn: sa.Connection,
    pending: Mapping[str, list[tuple[str, str, str]]] | None = None,
    guard: Guardrails | None = None,
    admit: Callable[[int, Mapping[str, str]], bool] | None = None,
    dnc: Mapping[str, str | None] | None = None,
    load: Counter[str] | None = None,
    ids: Mapping[str, int] | None = None,
) -> tuple[list[EnrollPlan], list[SkipPlan], dict[str, int]]:
    """Which rows to enroll (and on which identity), skip, or leave: those already enrolled,
    by URL, with their lead id (for :func:`plan_lead_updates`).

    ``pending`` adds holders not yet in the store (url -> [(sequence, identity, state)]): the
    enrollments planned for the sequences before this one in the same plan. ``guard`` adds
    the Policy's skips and the enrollment cap. ``admit(i, row)`` is asked about each row (its
    index in ``rows``) that would be enrolled: False leaves it out (preflight), before it
    takes an identity. ``dnc``: the do-not-contact list when the caller already read it (an
    import in chunks), else it is read here; ``load``: the enrollments per identity so far,
    counted here when None, else taken (and kept up to date) from the caller, so that chunks
    of one import do not count the table again. ``ids``: URL -> id of the stored leads among
    ``rows``, when the caller already looked them up in this transaction.
    """
    rows = list(rows)
    guard = guard or Guardrails()
    policy = guard.policy
    if ids is None:
        ids = store.lead_ids([r[URL_COLUMN] for r in rows], conn=conn)
    holders = store.enrollments_of_leads(ids.values(), conn=conn)
    touches: dict[int, list[tuple[datetime, str, str]]] = {}
    if policy is not None and policy.one_voice and ids:
        since = (guard.now or datetime.now().astimezone()) - policy.one_voice
        touches = store.touches(ids.values(), SENDS, since, conn=conn)
    dnc = store.do_not_contact(conn=conn) if dnc is None else dnc
    if load is None:
        load = identity_load(store, sequence, identities, conn)
    order = {ident: n for n, ident in enumerate(identities)}
    spread = _Spread(load, order)
    enroll: list[EnrollPlan] = []
    skipped: list[SkipPlan] = []
    already: dict[str, int] = {}
    for i, row in enumerate(rows):
        url = row[URL_COLUMN]
        lead_id = ids.get(url)
        held = list(holders.get(lead_id, [])) if lead_id is not None else []
        if pending:
            held.extend(pending.get(url, ()))
        if held and any(seq == sequence for seq, _, _ in held):
            if lead_id is not None:
                already[url] = lead_id
            continue
        # a new lead on no list (most rows of an import) needs no further look
        skip = _skip(url, held, dnc, order) if held or url in dnc else None
        if skip is None and policy is not None:
            reason = blocked_reason(policy, url, row)
            if reason is not None:
                skip = SkipPlan(url, "do_not_contact", reason)
            elif policy.one_voice is not None:
                touched = touches.get(lead_id, []) if lead_id is not None else []
                skip = _one_voice(url, sequence, held, touched, policy)
        if skip is None and guard.max_new is not None and len(enroll) >= guard.max_new:
            skip = SkipPlan(url, "cap", guard.cap_reason)
        if skip is not None:
            skipped.append(skip)
            continue
        if not identities:
            raise PlanError(f"sequence {sequence!r} has no identities to enroll leads on")
        if admit is not None and not admit(i, row):
            continue
        identity = spread.take()
        load[identity] += 1
        enroll.append(EnrollPlan(url, identity, dump_json(lead_data(row))))
    return enroll, skipped, already


class _Spread:
    """The identity with the fewest enrollments, ties broken by the manifest's order, taken
    one lead at a time (a heap: a million rows asked ``min`` over the identities each)."""

    def __init__(self, load: Mapping[str, int], order: Mapping[str, int]) -> None:
        self.heap = [(load[i], n, i) for i, n in order.items()]
        heapq.heapify(self.heap)

    def take(self) -> str:
        count, n, identity = self.heap[0]
        heapq.heapreplace(self.heap, (count + 1, n, identity))
        return identity


def identity_load(
    store: Store, sequence: str, identities: tuple[str, ...], conn: sa.Connection
) -> Counter[str]:
    """How many enrollments of ``sequence`` each of ``identities`` holds."""
    load: Counter[str] = Counter({i: 0 for i in identities})
    for identity, count in store.count_by_identity(sequence, conn=conn).items():
        if identity in load:
            load[identity] = count
    return load


def plan_lead_updates(
    store: Store, *, rows: Iterable[Mapping[str, str]], enrolled: Mapping[str, int],
    conn: sa.Connection,
) -> list[LeadUpdate]:
    """Leads of ``rows`` already enrolled (``enrolled``: URL -> lead id, as
    :func:`plan_enrollments` returns them) whose file data differs from the stored data (a
    column the file has and the store lacks, or another value)."""
    stored = store.leads_by_ids(enrolled.values(), conn=conn)
    out: list[LeadUpdate] = []
    for row in rows:
        url = row[URL_COLUMN]
        if url not in enrolled:
            continue
        lead = stored.get(enrolled[url])
        old = lead.data if lead is not None else {}
        new = lead_data(row)
        changes = {k: (old.get(k), v) for k, v in new.items() if old.get(k) != v}
        if changes:
            out.append(LeadUpdate(url, changes))
    return out



def update_leads(
    store: Store, conn: sa.Connection, updates: Iterable[LeadUpdate], *, now: datetime,
    trigger: str,
) -> int:
    """Merge the changed columns into the stored leads, with one ``lead_updated`` event each
    (the columns, not their values: `why` tells that the data changed and when)."""
    n = 0
    for u in updates:
        store.upsert_lead(u.profile_url, {k: new for k, (_, new) in u.changes.items()}, conn=conn)
        store.record_event("lead_updated", u.profile_url, {"columns": sorted(u.changes)},
                           at=now, trigger=trigger, conn=conn)
        n += 1
    return n



# ---- writing --------------------------------------------------------------------------------


def _stored_lead_ids(
    store: Store, conn: sa.Connection, plans: list[EnrollPlan], known: Mapping[str, int] | None,
) -> tuple[dict[str, int], Mapping[str, int]]:
    """Insert the new leads of ``plans`` in bulk, merge the new columns into the others,
    and return URL -> lead id of them all, and of those already stored before (``known``
    when the caller has just looked them up in this transaction)."""
    existing = store.lead_ids(map(_url, plans), conn=conn) if known is None else known
    new = [p for p in plans if p.profile_url not in existing] if existing else plans
    urls = list(map(_url, new))
    ids = dict(zip(urls, store.insert_leads(urls, [p.data_json for p in new], conn=conn),
                   strict=True))
    for p in plans:
        if p.profile_url in existing:
            ids[p.profile_url] = existing[p.profile_url]
            if p.data:
                store.upsert_lead(p.profile_url, p.data, conn=conn)  # merges the new columns
    return ids, existing


_url = attrgetter("profile_url")


def enroll_leads(
    store: Store,
    conn: sa.Connection,
    *,
    sequence: str,
    revision: str,
    initial: str,
    plans: Iterable[EnrollPlan],
    now: datetime,
    trigger: str,
    source: str | None = None,
    known: Mapping[str, int] | None = None,
) -> int:
    """Upsert the leads and enroll them (due now, at ``initial``), with one ``enrolled`` event
    each, in bulk statements on ``conn`` (the caller's transaction, under the apply lock).
    Leads already enrolled in ``sequence`` are left alone. Returns how many were enrolled.
    The statements go by slices of :data:`CHUNK_ROWS` plans (an apply of a million leads
    builds no million-row parameter lists). ``known``: URL -> id of the plans' leads already
    stored, when the caller looked them up in this transaction (an import's chunk), else
    they are looked up here. The new rows' ids come from their inserts (Store.new_ids), not
    read back."""
    plans = list(plans)
    held_back = _stopped_identities(store, conn) if plans else set()
    return sum(
        _enroll_slice(store, conn, sequence=sequence, revision=revision, initial=initial,
                      plans=plans[i : i + CHUNK_ROWS], now=now, trigger=trigger, source=source,
                      held_back=held_back, known=known)
        for i in range(0, len(plans), CHUNK_ROWS)
    )


def _enroll_slice(
    store: Store, conn: sa.Connection, *, sequence: str, revision: str, initial: str,
    plans: list[EnrollPlan], now: datetime, trigger: str, source: str | None,
    held_back: set[str], known: Mapping[str, int] | None,
) -> int:
    ids, existing = _stored_lead_ids(store, conn, plans, known)
    # a lead stored just now has no enrollment yet: only the others are looked up
    stored = [ids[p.profile_url] for p in plans if p.profile_url in existing]
    taken = store.enrollment_ids(sequence, stored, conn=conn) if stored else {}
    todo = [p for p in plans if ids[p.profile_url] not in taken] if taken else plans
    if not todo:
        return 0
    urls = list(map(_url, todo))
    identities = [p.identity for p in todo]
    # by column: what every row shares given once (see Store.insert_enrollments)
    same: dict[str, Any] = {"sequence": sequence, "revision": revision, "state": initial,
                            "next_due_at": now, "attempts": 0, "step_entered_at": now,
                            "last_error": None, "paused": False}
    each: dict[str, Sequence[Any]] = {"lead_id": list(map(ids.__getitem__, urls)),
                                      "identity": identities}
    if held_back:
        each["paused"] = [i in held_back for i in identities]
        del same["paused"]
    enrollment_ids = store.insert_enrollments(Columns(same, each), conn=conn)
    data = {i: dump_json({"sequence": sequence, "identity": i,
                          **({"source": source} if source else {})})
            for i in set(identities)}
    store.record_events(Columns(
        {"at": now, "kind": "enrolled", "from_state": None, "to_state": initial,
         "trigger": trigger, "revision": revision},
        {"enrollment_id": enrollment_ids, "subject": urls,
         "data_json": list(map(data.__getitem__, identities))},
    ), conn=conn)
    return len(todo)


def _stopped_identities(store: Store, conn: sa.Connection) -> set[str]:
    """Identities paused by the user or by AUTH_EXPIRED: new enrollments on them start paused
    (resuming the identity resumes them with the others)."""
    return {i.id for i in store.list_identities(conn=conn) if i.status != "active"}



# ---- leads import ---------------------------------------------------------------------------


@dataclass
class LeadsImportResult:
    sequence: str
    path: str
    taken: int
    refused: list[Problem]
    enrolled: int = 0
    already_enrolled: int = 0
    updated: int = 0
    skipped: list[SkipPlan] = field(default_factory=list)
    dry_run: bool = False
    enroll: list[EnrollPlan] = field(default_factory=list)  # the plan of a dry run

    def to_json(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "dry_run": self.dry_run,
            "enroll": [{"profile_url": e.profile_url, "identity": e.identity}
                       for e in self.enroll],
            "file": self.path,
            "taken": self.taken,
            "refused": len(self.refused),
            "problems": [str(p) for p in self.refused],
            "enrolled": self.enrolled,
            "already_enrolled": self.already_enrolled,
            "updated": self.updated,
            "skipped": [
                {"profile_url": s.profile_url, "reason": s.reason, "detail": s.detail}
                for s in self.skipped
            ],
        }


def enroll_room(
    store: Store, sequence: str, ceiling: int | None, flag: int | None, conn: sa.Connection,
    *, later: str,
) -> tuple[int | None, str]:
    """How many new leads may be enrolled (None: no cap) and why a lead over it waits: the
    sequence's ``caps.max_enroll`` (``ceiling``: its enrollments in all) and ``--max-enroll``
    (``flag``: this apply or import, ``later``), the tighter."""
    room, reason = flag, ""
    if flag is not None:
        reason = f"over --max-enroll {flag}: waits for a later {later}"
    if ceiling is not None:
        held = sum(store.count_by_identity(sequence, conn=conn).values())
        if room is None or max(0, ceiling - held) < room:
            room = max(0, ceiling - held)
            reason = (f"over caps.max_enroll {ceiling} (the sequence holds {held}): waits "
                      "until the cap is raised")
    return room, reason


def import_guardrails(
    store: Store, sequence: str, meta: Mapping[str, Any], conn: sa.Connection,
    *, max_enroll: int | None, now: datetime,
) -> Guardrails:
    """The guardrails of ``leads import`` into an applied sequence: the applied Policy, its
    ``caps.max_enroll`` as applied and ``--max-enroll``."""
    data = store.kv_get(*POLICY_KEY, conn=conn)
    policy = policy_from_json(data) if isinstance(data, dict) else None
    caps = meta.get("caps")
    ceiling = caps.get("max_enroll") if isinstance(caps, dict) else None
    room, reason = enroll_room(store, sequence, None if ceiling is None else int(ceiling),
                               max_enroll, conn, later="import")
    return Guardrails(policy, room, now, reason)


def import_leads(
    path: str | Path, sequence: str, *, store: Store, now: datetime, dry_run: bool = False,
    max_enroll: int | None = None,
) -> LeadsImportResult:
    """Read a leads CSV and enroll its rows into an applied sequence (same rules as plan:
    the do-not-contact lists, leads held elsewhere, the applied Policy, the enrollment caps).

    The file is streamed in chunks (:func:`read_lead_chunks`), each planned and written in
    bulk, all in one transaction under the ``apply`` lock: memory stays bounded whatever the
    file's size, and a file that turns out unreadable (LeadsError) writes nothing. Rows are
    spread over the identities as one pass would (each chunk sees the ones before it).
    ``dry_run``: the plan only (nothing written).
    """
    meta = store.kv_get(META_NS, sequence)
    current = store.get_sequence(sequence)
    if current is None or not isinstance(meta, dict):
        raise PlanError(f"no applied sequence named {sequence!r}; run `seqrun apply` first")
    result = LeadsImportResult(sequence, str(path), 0, [], dry_run=dry_run)
    identities = tuple(meta.get("identities") or ())
    with store.lock(APPLY_LOCK), store.transaction() as conn, bulk_collection():
        guard = import_guardrails(store, sequence, meta, conn, max_enroll=max_enroll, now=now)
        dnc = store.do_not_contact(conn=conn)
        load = identity_load(store, sequence, identities, conn)
        for leads in read_lead_chunks(path):
            result.taken += leads.taken
            result.refused.extend(leads.refused)
            # looked up once: the plan and the writes of this chunk both need them
            ids = store.lead_ids([r[URL_COLUMN] for r in leads.rows], conn=conn)
            enroll, skipped, already = plan_enrollments(
                store, sequence=sequence, identities=identities, rows=leads.rows, conn=conn,
                guard=guard, dnc=dnc, load=load, ids=ids,
            )
            if guard.max_new is not None:  # the cap is the import's, over every chunk
                guard = replace(guard, max_new=guard.max_new - len(enroll))
            result.skipped.extend(skipped)
            result.already_enrolled += len(already)
            updates = plan_lead_updates(store, rows=leads.rows, enrolled=already, conn=conn)
            if dry_run:  # the plan is the answer (kept only then: memory stays bounded)
                result.enroll.extend(enroll)
                result.updated += len(updates)
                continue
            result.updated += update_leads(store, conn, updates, now=now, trigger="import")
            result.enrolled += enroll_leads(
                store, conn, sequence=sequence, revision=current.current_revision,
                initial=str(meta["initial"]), plans=enroll, now=now, trigger="import",
                source=str(path), known=ids,
            )
    return result
