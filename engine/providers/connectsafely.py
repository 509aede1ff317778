"""ConnectSafely adapter. Owner: runtime work."""

from __future__ import annotations

from engine.providers.base import ProviderSpec, register

SPEC = register(
    ProviderSpec(
        name="connectsafely",
        capabilities=frozenset({"connect", "send_message", "send_inmail", "check_connection", "follow"}),
        smart_limits={"connect": 13, "send_message": 100},
        max_note=300,
        max_message=8000,
        credentials=("CONNECTSAFELY_API_KEY",),
        default_base_url="https://api.connectsafely.ai/linkedin",
    )
)
