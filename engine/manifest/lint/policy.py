"""Policy rules a schema cannot say: the quiet days' timezone, and one-lead-one-voice and
frequency settings that would hold nobody back."""

from __future__ import annotations

from engine.manifest.lint.common import Report, timezone_error
from engine.model import Policy


def lint_policy(policy: Policy, report: Report) -> None:
    message = timezone_error(policy.timezone)
    if message:
        report("$.spec.timezone", message)
    if policy.one_voice is not None and not policy.one_voice:
        report(
            "$.spec.one_lead_one_voice.lookback",
            "a lookback of 0: only leads in flight elsewhere are held back (contacted ones "
            "are not)",
            severity="warning",
        )
