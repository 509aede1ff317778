"""A/B variants and experiments on an action step: what a schema cannot say (which actions
take variants and which texts each may carry, unique names, an experiment's metric).

The variants' texts themselves are checked with the step's other templates
(:mod:`.content`: syntax, lead columns, lengths)."""

from __future__ import annotations

from engine.manifest.lint.common import Report
from engine.manifest.yamlio import child_path
from engine.model import ActionStep, Sequence

#: action -> the texts a variant may replace
VARIANT_TEXTS: dict[str, tuple[str, ...]] = {
    "connect": ("note",),
    "send_message": ("text",),
    "send_inmail": ("text", "subject"),
}


def check_variants(seq: Sequence, report: Report) -> None:
    for step in seq.steps:
        if isinstance(step, ActionStep) and (step.variants or step.experiment):
            _check_step(step, report)


def _check_step(step: ActionStep, report: Report) -> None:
    where = f"in step {step.id!r}"
    if step.experiment is not None and not step.variants:
        report(child_path(step.path, "experiment"),
               f"{where}: an experiment needs `variants:` (two or more named texts) to compare")
        return
    texts = VARIANT_TEXTS.get(step.action)
    if texts is None:
        able = ", ".join(VARIANT_TEXTS)
        report(child_path(step.path, "variants"),
               f"{where}: {step.action} sends no text to vary (variants are for {able})")
        return
    seen: set[str] = set()
    for i, variant in enumerate(step.variants):
        path = child_path(child_path(step.path, "variants"), i)
        if variant.name in seen:
            report(child_path(path, "name"),
                   f"{where}: variant name {variant.name!r} is used twice")
        seen.add(variant.name)
        for key in variant.with_:
            if key not in texts:
                allowed = " or ".join(repr(t) for t in texts)
                report(child_path(path, key),
                       f"{where}: a {step.action} variant carries {allowed}, not {key!r}")
        if step.action != "connect" and "text" not in variant.with_ and "text" not in step.with_:
            report(path, f"{where}: variant {variant.name!r} has no text (give `text:` here "
                         "or in the step's `with:`)")
    experiment = step.experiment
    if experiment is not None and experiment.metric == "acceptance_rate" and (
            step.action != "connect"):
        report(child_path(child_path(step.path, "experiment"), "metric"),
               f"{where}: acceptance_rate measures invitations: only a connect step has it "
               "(use reply_rate)")
