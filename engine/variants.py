"""Which A/B variant of a step a lead gets: a hash of its profile URL, the sequence and the
step id, so the choice is the same on every re-run and in every revision of the sequence
(a new text or a reordered list of variants keeps each lead's name; changed weights move
only the leads whose hash crosses a boundary). A lead row may name its variant of a step in a
``variant:<step id>`` column (:func:`forced`): how ``seqrun test`` tests each variant's route,
through the same assignment and recording as any lead's.

>>> from engine.model import ActionStep, Variant
>>> step = ActionStep("intro", "send_message", variants=(Variant("a"), Variant("b")))
>>> assign(step, "founders", "https://www.linkedin.com/in/ada").name in ("a", "b")
True
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Mapping
from typing import Any

from engine.model import ActionStep, Variant
from engine.urls import normalize_profile_url


def _unit(url: str, sequence: str, step: str) -> float:
    """A number in [0, 1) fixed by the lead, the sequence and the step."""
    with contextlib.suppress(ValueError):  # not a profile URL (a test's lead): as it is
        url = normalize_profile_url(url)
    key = f"{url}\x00{sequence}\x00{step}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64


def assign(step: ActionStep, sequence: str, url: str) -> Variant:
    """The variant of ``step`` the lead at ``url`` gets (weights as shares; the variants are
    taken in name order so a reordered list changes nobody's)."""
    ordered = sorted(step.variants, key=lambda v: v.name)
    total = sum(v.weight for v in ordered)
    point = _unit(url, sequence, step.id) * total
    for variant in ordered:
        point -= variant.weight
        if point < 0:
            return variant
    return ordered[-1]  # rounding at the very top of the range


#: the lead column that names a lead's variant of a step (``variant:intro``: ``short-call``)
FORCE_PREFIX = "variant:"


def forced(step: ActionStep, data: Mapping[str, Any]) -> Variant | None:
    """The variant the lead's row names for ``step`` (None: none named, or no such variant)."""
    name = data.get(FORCE_PREFIX + step.id)
    return step.variant(str(name)) if name else None


def chosen(
    step: ActionStep, sequence: str, url: str, promoted: str | None = None,
    data: Mapping[str, Any] | None = None,
) -> Variant | None:
    """The variant to send: the promoted winner of a decided experiment (a losing variant is
    never sent again, whoever asked for it), else the one the lead's row ``data`` names, else
    the lead's own by hash (None for a step without variants)."""
    if not step.variants:
        return None
    winner = step.variant(promoted) if promoted is not None else None
    return winner or forced(step, data or {}) or assign(step, sequence, url)


def texts(step: ActionStep, variant: Variant | None) -> Mapping[str, Any]:
    """The step's ``with`` with the variant's texts in place of its own."""
    return step.with_ if variant is None else {**step.with_, **variant.with_}
