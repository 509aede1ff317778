"""Edges adapter (live mode). Owner: runtime work (issue 5)."""

from __future__ import annotations

from engine.providers.base import ProviderSpec, register

SPEC = register(
    ProviderSpec(
        name="edges",
        capabilities=frozenset(
            {"visit_profile", "connect", "send_message", "send_inmail", "withdraw_invitation",
             "check_connection"}
        ),
        smart_limits={"visit_profile": 80, "connect": 25, "send_message": 50},
        max_note=300,
        max_message=8000,
        credentials=("EDGES_API_KEY",),
        default_base_url="https://api.edges.run/v1",
    )
)
