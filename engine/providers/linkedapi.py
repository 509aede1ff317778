"""LinkedAPI adapter, both API generations. Owner: LinkedAPI work (issue 6)."""

from __future__ import annotations

from engine.providers.base import ProviderSpec, register

SPEC = register(
    ProviderSpec(
        name="linkedapi",
        capabilities=frozenset(
            {"visit_profile", "connect", "send_message", "withdraw_invitation", "check_connection"}
        ),
        smart_limits={"visit_profile": 80, "connect": 10, "send_message": 50},
        max_note=300,
        max_message=1900,
        credentials=("LINKEDAPI_TOKEN", "LINKEDAPI_IDENTIFICATION_TOKEN"),
        default_base_url="https://api.linkedapi.io",
    )
)
