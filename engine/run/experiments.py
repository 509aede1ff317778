"""Declared experiments looked at by the runner: at each look of its schedule
(:mod:`engine.experiments`) a step's variants are tested; a significant winner is recorded
(an ``experiment_decided`` event with the figures, and the decision in kv ``experiments``)
and, with ``auto_promote``, becomes the only variant sent from then on."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from engine.experiments import EXPERIMENTS_NS, StepExperiment, decide, look_of, measure
from engine.model import ActionStep
from engine.run.state import RunState

log = logging.getLogger(__name__)

#: how often (clock time) a sequence's experiments are measured by one runner
EVERY = timedelta(hours=1)


class Experiments:
    """Looks at the declared experiments of every applied sequence, at most every ``EVERY``."""

    def __init__(self, state: RunState) -> None:
        self.state = state
        self._last: datetime | None = None

    def check(self) -> list[dict[str, Any]]:
        """Run the looks that are due; returns the decisions made now (also recorded)."""
        now = self.state.clock.now()
        if self._last is not None and now - self._last < EVERY:
            return []
        self._last = now
        store = self.state.store
        promoted: dict[tuple[str, str], str] = {}
        decided: list[dict[str, Any]] = []
        for row in store.list_sequences():
            if row.kind != "Sequence":
                continue
            seq = self.state.sequence(row.current_revision)
            steps = [s for s in seq.steps if isinstance(s, ActionStep) and s.experiment]
            for found in measure(store, row.name, steps):
                decision = found.decision or self._look(found, now)
                if decision is None:
                    continue
                if found.decision is None:
                    decided.append(decision)
                if decision.get("promoted"):
                    promoted[(row.name, found.step)] = str(decision["winner"])
        self.state.promoted = promoted
        return decided

    def _look(self, found: StepExperiment, now: datetime) -> dict[str, Any] | None:
        """The next look of ``found`` if its sample reached it (each look is taken once)."""
        experiment = found.experiment
        smallest = min(v.sent for v in found.variants)
        look = look_of(smallest, experiment.min_sample)
        if look is None or look < found.looks_done:
            return None
        metric = experiment.metric
        counts = [(v.name, v.sent, v.metric(metric).successes) for v in found.variants]
        verdict = decide(counts, experiment, look=look)
        key = f"{found.sequence}/{found.step}"
        record: dict[str, Any] = {"looks": look + 1, "last_look": verdict.to_json(),
                                  "at": now.isoformat()}
        decision = None
        if verdict.winner is not None:
            decision = {
                "sequence": found.sequence, "step": found.step, "winner": verdict.winner,
                "promoted": experiment.auto_promote, "metric": metric,
                "p_value": verdict.p_value, "z": verdict.z, "alpha": verdict.alpha,
                "look": look, "sent": smallest, "at": now.isoformat(),
                "variants": {v.name: {"sent": v.sent, "successes": v.metric(metric).successes,
                                      "rate": v.metric(metric).rate,
                                      "ci95": v.metric(metric).interval}
                             for v in found.variants},
            }
            record["decision"] = decision
        with self.state.store.transaction() as conn:
            self.state.store.kv_put(EXPERIMENTS_NS, key, record, conn=conn)
            if decision is not None:
                self.state.store.record_event("experiment_decided", key, decision, at=now,
                                              conn=conn)
        if decision is not None:
            log.info("experiment %s: %s wins (p=%s)", key, decision["winner"], verdict.p_value)
        return decision
