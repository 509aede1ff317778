"""The funnel a growth person reads: how many leads reached each step, the acceptance and
reply rates (overall and per identity), and why leads ended where they did (a ``removed``
count split into "withdrawn after the acceptance wait timed out" and "profile not
accessible"...). Computed from three grouped queries of the store
(:class:`engine.store.funnel.FunnelCounts`); rendering lives in :mod:`engine.cli.render`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.store import Store
from engine.vocab import TERMINALS

#: how a step's action reads once done ("withdrawn at withdraw")
_DONE = {
    "visit_profile": "visited",
    "connect": "invited",
    "send_message": "messaged",
    "send_inmail": "InMail sent",
    "withdraw_invitation": "invitation withdrawn",
    "check_connection": "connection checked",
    "follow": "followed",
}
#: how a trigger reads ("after accepted timed out")
_TRIGGER = {
    "timeout": "timed out",
    "elapsed": "wait ended",
    "accepted": "invitation accepted",
    "reply": "the lead replied",
    "ok": "done",
}


def ratio(part: int, whole: int) -> float | None:
    """``part / whole`` rounded to 3 places; None when there is no whole to divide by."""
    return round(part / whole, 3) if whole else None


@dataclass(frozen=True)
class Rates:
    """One identity's (or a whole sequence's) conversion: each count is of leads."""

    enrolled: int = 0
    invited: int = 0  # an invitation sent (a connect done)
    accepted: int = 0  # the invitation accepted while a wait_for watched it
    already_connected: int = 0  # connected before we asked: no invitation needed
    messaged: int = 0  # at least one message or InMail sent
    replied: int = 0  # ended in `replied` (wrote back, or wrote first)

    @property
    def acceptance_rate(self) -> float | None:
        return ratio(self.accepted, self.invited)

    @property
    def reply_rate(self) -> float | None:
        return ratio(self.replied, self.enrolled)

    def to_json(self) -> dict[str, Any]:
        return {
            "enrolled": self.enrolled, "invited": self.invited, "accepted": self.accepted,
            "already_connected": self.already_connected, "messaged": self.messaged,
            "replied": self.replied, "acceptance_rate": self.acceptance_rate,
            "reply_rate": self.reply_rate,
        }


@dataclass(frozen=True)
class TerminalReason:
    """``count`` leads ended in ``terminal`` leaving ``from_state`` on ``trigger``; ``via_*``
    is how they had come into ``from_state`` when every lead came the same non-ok way
    (``withdraw`` entered on ``accepted --timeout->``)."""

    terminal: str
    count: int
    from_state: str | None
    trigger: str | None
    action: str | None = None  # the from step's action, when it is an action step
    via_state: str | None = None
    via_trigger: str | None = None

    @property
    def text(self) -> str:
        """The reason in words: ``invitation withdrawn at withdraw, after accepted timed out``."""
        where = self.from_state or "?"
        if self.trigger == "ok" and self.action in _DONE:
            head = f"{_DONE[self.action]} at {where}"
        elif self.trigger == "ok" and self.action is None:  # an `end` step
            head = f"end step {where}"
        elif self.trigger == "reply":
            head = f"the lead replied during {where}"
        elif self.trigger in _TRIGGER:
            head = f"{where}: {_TRIGGER[self.trigger or '']}"
        else:  # an error label: PROFILE_NOT_ACCESSIBLE -> "profile not accessible at visit"
            head = f"{str(self.trigger).lower().replace('_', ' ')} at {where}"
        if self.via_state is not None and self.via_trigger is not None:
            head += f", after {self.via_state} {_TRIGGER.get(self.via_trigger, self.via_trigger)}"
        return head

    def to_json(self) -> dict[str, Any]:
        return {
            "terminal": self.terminal, "count": self.count, "from": self.from_state,
            "trigger": self.trigger, "via": None if self.via_state is None else
            {"from": self.via_state, "trigger": self.via_trigger},
            "text": self.text,
        }


@dataclass(frozen=True)
class Funnel:
    """A sequence's conversion: overall, per identity, per step, and its terminal reasons."""

    overall: Rates = field(default_factory=Rates)
    by_identity: dict[str, Rates] = field(default_factory=dict)
    reached: dict[str, int] = field(default_factory=dict)  # step/terminal -> leads that entered
    reasons: list[TerminalReason] = field(default_factory=list)

    def reached_rate(self, state: str) -> float | None:
        return ratio(self.reached.get(state, 0), self.overall.enrolled)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.overall.to_json(),
            "by_identity": {i: r.to_json() for i, r in self.by_identity.items()},
            "reached": [{"state": s, "leads": n, "rate": self.reached_rate(s)}
                        for s, n in self.reached.items()],
            "terminal_reasons": [r.to_json() for r in self.reasons],
        }


def _rates(enrolled: int, done: Mapping[str, int], triggers: Mapping[str, int],
           replied: int) -> Rates:
    return Rates(
        enrolled=enrolled,
        invited=done.get("connect", 0),
        accepted=triggers.get("accepted", 0),
        already_connected=triggers.get("ALREADY_CONNECTED", 0),
        messaged=done.get("send_message", 0) + done.get("send_inmail", 0),
        replied=replied,
    )


def _reasons(
    edges: Mapping[tuple[str | None, str | None, str | None], int], actions: Mapping[str, str]
) -> list[TerminalReason]:
    into: dict[str, set[tuple[str | None, str | None]]] = defaultdict(set)
    for (src, dest, trigger), _ in edges.items():
        if dest is not None:
            into[dest].add((src, trigger))
    out: list[TerminalReason] = []
    for (src, dest, trigger), n in edges.items():
        if dest not in TERMINALS:
            continue
        via = into.get(src or "", set())
        via_state, via_trigger = next(iter(via)) if len(via) == 1 else (None, None)
        if via_trigger == "ok":  # the plain path: nothing worth saying
            via_state = via_trigger = None
        out.append(TerminalReason(dest, n, src, trigger, actions.get(src or ""),
                                  via_state, via_trigger))
    order = {t: i for i, t in enumerate(TERMINALS)}
    return sorted(out, key=lambda r: (order.get(r.terminal, 99), -r.count, r.from_state or ""))


def funnel(
    store: Store, sequence: str, enrolled: Mapping[str, int], actions: Mapping[str, str]
) -> Funnel:
    """The funnel of ``sequence``: ``enrolled`` is its leads per identity now, ``actions``
    each action step's action (for the reasons' wording)."""
    reached: Counter[str] = Counter()
    replied: Counter[str] = Counter()
    for identity, state, n in store.reached_counts(sequence):
        reached[state] += n
        if state == "replied":
            replied[identity] += n
    done: dict[str, Counter[str]] = defaultdict(Counter)
    for identity, action, n in store.done_action_counts(sequence):
        done[identity][action] += n
    triggers: dict[str, Counter[str]] = defaultdict(Counter)
    edges: Counter[tuple[str | None, str | None, str | None]] = Counter()
    for identity, src, dest, trigger, n in store.edge_counts(sequence):
        edges[(src, dest, trigger)] += n
        if trigger is not None:
            triggers[identity][trigger] += n
    by_identity = {
        i: _rates(enrolled.get(i, 0), done[i], triggers[i], replied[i])
        for i in sorted(set(enrolled) | set(done))
    }
    overall = _rates(sum(enrolled.values()), sum(done.values(), Counter()),
                     sum(triggers.values(), Counter()), sum(replied.values()))
    return Funnel(overall, by_identity, dict(reached), _reasons(edges, actions))
