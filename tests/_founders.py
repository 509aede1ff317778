"""The founders outreach steps as model objects, shared by the lint and compiler tests."""

from __future__ import annotations

from datetime import timedelta

from engine.model import ActionStep, Step, WaitForStep, WaitStep


def P(i: int) -> str:
    return f"$.spec.steps[{i}]"


def founders_steps() -> tuple[Step, ...]:
    """visit, connect, wait_for accepted, intro, breather, follow_up, withdraw (7 steps)."""
    return (
        ActionStep("visit", "visit_profile", path=P(0)),
        ActionStep(
            "connect",
            "connect",
            with_={"note": "Hi {{ lead.first_name }}, I follow {{ lead.company_name }}."},
            on={"ALREADY_CONNECTED": "intro", "INVITATION_PENDING": "accepted"},
            path=P(1),
        ),
        WaitForStep("accepted", "connection_accepted", timedelta(days=14), "withdraw", path=P(2)),
        ActionStep(
            "intro",
            "send_message",
            with_={"text": "Thanks, {{ lead.first_name | default('there') }}! {Curious|Wondering}"},
            on={"NOT_CONNECTED": "connect"},
            path=P(3),
        ),
        WaitStep("breather", timedelta(days=3), path=P(4)),
        ActionStep(
            "follow_up",
            "send_message",
            with_={"text": "Quick follow-up?"},
            next="completed",
            path=P(5),
        ),
        ActionStep("withdraw", "withdraw_invitation", next="removed", path=P(6)),
    )
