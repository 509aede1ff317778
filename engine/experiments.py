"""A/B variants measured: each variant's funnel (leads, sent, accepted, replied, rates with
95 % Wilson intervals) and the verdict of a two-proportion z-test between them, from
statsmodels (``proportions_ztest``, ``proportion_confint``, ``NormalIndPower``).

A declared experiment is looked at on a fixed schedule, not at every tick: looking again and
again at growing data until a p-value dips under alpha would call a winner between equal
variants far more often than alpha says. Look ``j`` (0, 1, 2...) comes when every variant was
sent ``min_sample * 2**j`` leads and spends ``alpha / 2**(j+1)`` of the significance level
(Bonferroni over the looks: however long the test runs, the chance of calling a winner between
equal variants stays under ``alpha``). With more than two variants the best one must beat each
other one at that level divided by the number of comparisons.

>>> verdict = decide([("a", 400, 40), ("b", 400, 80)], Experiment("reply_rate"), look=0)
>>> verdict.winner, verdict.significant
('b', True)
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.model import ActionStep, Experiment
from engine.store import Store

__all__ = [
    "DEFAULT_EXPERIMENT",
    "EXPERIMENTS_NS",
    "Proportion",
    "StepExperiment",
    "VariantFunnel",
    "Verdict",
    "decide",
    "look_alpha",
    "look_of",
    "measure",
]

#: kv namespace of the decided experiments: "<sequence>/<step>" -> the decision's figures
EXPERIMENTS_NS = "experiments"
#: how a step with variants but no `experiment:` is reported (never promoted)
DEFAULT_EXPERIMENT = Experiment(metric="reply_rate")
CONFIDENCE = 0.95  # of the rates' intervals
POWER = 0.8  # of the sample needed to tell the observed rates apart


@dataclass(frozen=True)
class Proportion:
    """``successes`` of ``trials``, its rate and 95 % Wilson interval."""

    successes: int
    trials: int

    @property
    def rate(self) -> float | None:
        return round(self.successes / self.trials, 4) if self.trials else None

    @property
    def interval(self) -> tuple[float, float] | None:
        if not self.trials:
            return None
        from statsmodels.stats.proportion import proportion_confint  # deferred: ~1 s import

        lo, hi = proportion_confint(self.successes, self.trials, alpha=1 - CONFIDENCE,
                                    method="wilson")
        return round(float(lo), 4), round(float(hi), 4)

    def to_json(self) -> dict[str, Any]:
        interval = self.interval
        return {"successes": self.successes, "trials": self.trials, "rate": self.rate,
                "ci95": None if interval is None else list(interval)}


@dataclass(frozen=True)
class VariantFunnel:
    """One variant of a step: leads it was tried for, sent, accepted and replied (of sent)."""

    name: str
    weight: float
    leads: int = 0
    sent: int = 0
    accepted: int | None = 0  # None: not an invitation (a message step)
    replied: int = 0

    @property
    def acceptance(self) -> Proportion:
        return Proportion(self.accepted or 0, self.sent)

    @property
    def reply(self) -> Proportion:
        return Proportion(self.replied, self.sent)

    def metric(self, name: str) -> Proportion:
        return self.acceptance if name == "acceptance_rate" else self.reply

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "weight": self.weight, "leads": self.leads,
                "sent": self.sent, "accepted": self.accepted, "replied": self.replied,
                "acceptance_rate": None if self.accepted is None
                else self.acceptance.to_json(),
                "reply_rate": self.reply.to_json()}


@dataclass(frozen=True)
class Verdict:
    """The test between the best variant and the others at one look."""

    metric: str
    alpha: float  # the level this look spends
    min_sample: int
    look: int | None  # the look's index; None: below min_sample, no look yet
    winner: str | None = None  # set only when significant
    best: str | None = None  # the variant with the highest rate now
    p_value: float | None = None  # the largest of the best's comparisons
    z: float | None = None
    needed: int | None = None  # leads per variant to tell the observed rates apart (power 0.8)
    next_look: int = 0  # leads per variant sent at the next look

    @property
    def significant(self) -> bool:
        return self.winner is not None

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "alpha": self.alpha, "min_sample": self.min_sample,
                "look": self.look, "winner": self.winner, "best": self.best,
                "p_value": self.p_value, "z": self.z, "needed_per_variant": self.needed,
                "next_look_at": self.next_look}


@dataclass(frozen=True)
class StepExperiment:
    """A step's variants, their funnels, the verdict now, and the decision recorded (if any)."""

    sequence: str
    step: str
    action: str
    experiment: Experiment
    declared: bool  # an `experiment:` in the manifest (else the default, never promoted)
    variants: list[VariantFunnel]
    verdict: Verdict
    decision: dict[str, Any] | None = None  # the recorded look that called a winner
    looks_done: int = 0

    @property
    def promoted(self) -> str | None:
        """The variant now sent to everyone (a decided experiment with auto_promote)."""
        if self.decision and self.decision.get("promoted"):
            return str(self.decision.get("winner"))
        return None

    @property
    def summary(self) -> str:
        """One line: the winner, or "no winner yet" with the sample still needed."""
        metric = self.experiment.metric.replace("_", " ")
        if not self.declared:
            p = self.verdict.p_value
            return (f"no `experiment:` declared: no winner is called (best now "
                    f"{self.verdict.best or '-'}, p {_fmt_p(p)} at a single look)")
        if self.decision and self.decision.get("winner"):
            d = self.decision
            tail = ("promoted: only it is sent now" if d.get("promoted")
                    else "not promoted (auto_promote is off)")
            return (f"winner {d['winner']!r} on {metric} (p={_fmt_p(d.get('p_value'))} at "
                    f"alpha {d.get('alpha')}, at least {d.get('sent')} sent each): {tail}")
        smallest = min((v.sent for v in self.variants), default=0)
        need = max(self.verdict.next_look - smallest, 0)
        text = f"no winner yet on {metric}: {need} more sent per variant to the next look"
        text += f" (at {self.verdict.next_look}; min_sample {self.experiment.min_sample})"
        if self.verdict.needed is not None:
            text += f"; about {self.verdict.needed} per variant to tell the rates now apart"
        elif smallest:
            text += "; the rates now are equal"
        if self.verdict.p_value is not None:
            text += f"; p now {_fmt_p(self.verdict.p_value)}"
        return text

    def to_json(self) -> dict[str, Any]:
        return {"sequence": self.sequence, "step": self.step, "action": self.action,
                "declared": self.declared, "metric": self.experiment.metric,
                "min_sample": self.experiment.min_sample, "alpha": self.experiment.alpha,
                "auto_promote": self.experiment.auto_promote,
                "variants": [v.to_json() for v in self.variants],
                "verdict": self.verdict.to_json(), "decision": self.decision,
                "promoted": self.promoted, "looks_done": self.looks_done,
                "summary": self.summary}


def _fmt_p(value: Any) -> str:
    return "?" if not isinstance(value, int | float) else f"{value:.2g}"


def look_of(min_sent: int, min_sample: int) -> int | None:
    """The latest look a sample of ``min_sent`` leads per variant has reached (None: none)."""
    if min_sent < min_sample:
        return None
    return math.floor(math.log2(min_sent / min_sample))


def look_alpha(alpha: float, look: int) -> float:
    """The significance level look ``look`` spends: alpha/2, alpha/4, ... (sums to alpha)."""
    return float(alpha / 2 ** (look + 1))


def decide(
    counts: Sequence[tuple[str, int, int]],
    experiment: Experiment,
    *,
    look: int | None,
    call: bool = True,
) -> Verdict:
    """The verdict between variants given ``(name, trials, successes)`` each, at ``look``
    (None: below min_sample, only the figures). ``call=False``: the figures only, never a
    winner (what status shows between the recorded looks)."""
    from statsmodels.stats.proportion import proportions_ztest  # deferred: ~1 s import

    level = look_alpha(experiment.alpha, look if look is not None else 0)
    others = max(len(counts) - 1, 1)
    per_test = level / others
    smallest = min((n for _, n, _ in counts), default=0)
    reached = look_of(smallest, experiment.min_sample)
    next_look = experiment.min_sample * 2 ** ((reached + 1) if reached is not None else 0)
    base = Verdict(experiment.metric, level, experiment.min_sample, look, next_look=next_look)
    rated = [(name, n, k, k / n) for name, n, k in counts if n]
    if len(rated) < 2 or len(rated) < len(counts):
        return base
    rated.sort(key=lambda r: (-r[3], r[0]))
    best = rated[0]
    worst_p, worst_z = 0.0, math.inf
    for other in rated[1:]:
        if best[2] + other[2] == 0 or (best[2] == best[1] and other[2] == other[1]):
            worst_p, worst_z = 1.0, 0.0  # no successes (or all) on both sides: nothing to tell
            continue
        z, p = proportions_ztest([best[2], other[2]], [best[1], other[1]])
        if float(p) > worst_p:
            worst_p, worst_z = float(p), float(z)
    needed = _needed(best[3], rated[1][3], per_test)
    winner = best[0] if call and look is not None and worst_p < per_test else None
    return Verdict(experiment.metric, level, experiment.min_sample, look, winner, best[0],
                   round(worst_p, 6), round(worst_z, 3), needed, next_look)


def _needed(p1: float, p2: float, alpha: float) -> int | None:
    """Leads per variant to tell ``p1`` from ``p2`` at ``alpha`` with power 0.8 (None when
    they are equal)."""
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    effect = abs(float(proportion_effectsize(p1, p2)))
    if effect < 1e-9:
        return None
    n = NormalIndPower().solve_power(effect_size=effect, alpha=alpha, power=POWER, ratio=1.0)
    return math.ceil(float(n))


@dataclass
class _Tally:
    leads: set[int] = field(default_factory=set)
    sent: dict[int, datetime] = field(default_factory=dict)


def _funnels(store: Store, sequence: str) -> dict[str, dict[str, VariantFunnel]]:
    """step -> variant -> its funnel, from the action log and the transitions."""
    tallies: dict[tuple[str, str], _Tally] = defaultdict(_Tally)
    for step, variant, eid, done, at in store.variant_actions(sequence):
        tally = tallies[(step, variant)]
        tally.leads.add(eid)
        if done:
            tally.sent[eid] = at
    accepted, replied = store.outcome_times(sequence)
    out: dict[str, dict[str, VariantFunnel]] = defaultdict(dict)
    for (step, variant), tally in tallies.items():
        out[step][variant] = VariantFunnel(
            variant, 1.0, len(tally.leads), len(tally.sent),
            sum(1 for e, at in tally.sent.items() if e in accepted and accepted[e] >= at),
            sum(1 for e, at in tally.sent.items() if e in replied and replied[e] >= at),
        )
    return out


def measure(store: Store, sequence: str, steps: Sequence[ActionStep]) -> list[StepExperiment]:
    """Every step with variants of ``sequence`` (its current revision's ``steps``), measured."""
    with_variants = [s for s in steps if s.variants]
    if not with_variants:
        return []
    funnels = _funnels(store, sequence)
    out: list[StepExperiment] = []
    for step in with_variants:
        found = funnels.get(step.id, {})
        variants = [
            _funnel(v.name, v.weight, found.get(v.name), invites=step.action == "connect")
            for v in sorted(step.variants, key=lambda v: v.name)
        ]
        experiment = step.experiment or DEFAULT_EXPERIMENT
        record = store.kv_get(EXPERIMENTS_NS, f"{sequence}/{step.id}") or {}
        counts = [(v.name, v.sent, v.metric(experiment.metric).successes) for v in variants]
        smallest = min(v.sent for v in variants)
        # figures only: a winner is called at a recorded look (engine.run.experiments)
        verdict = decide(counts, experiment, look=look_of(smallest, experiment.min_sample),
                         call=False)
        decision = record.get("decision") if isinstance(record, dict) else None
        looks = int(record.get("looks", 0)) if isinstance(record, dict) else 0
        out.append(StepExperiment(sequence, step.id, step.action, experiment,
                                  step.experiment is not None, variants, verdict,
                                  decision if isinstance(decision, dict) else None, looks))
    return out


def _funnel(
    name: str, weight: float, found: VariantFunnel | None, *, invites: bool
) -> VariantFunnel:
    found = found or VariantFunnel(name, weight)
    return VariantFunnel(name, weight, found.leads, found.sent,
                         found.accepted if invites else None, found.replied)
