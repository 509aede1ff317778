"""apply: what ``seqrun apply`` would change (plan), and changing it (sequences, leads,
schedules, workflows). The names its modules share live here."""

from __future__ import annotations

APPLY_LOCK = "apply"  # the store lock plan/apply and leads import hold
META_NS = "sequence_meta"  # kv: name -> {revision, provider, identities, initial, steps}

__all__ = ["APPLY_LOCK", "META_NS"]
