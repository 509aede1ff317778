"""The Edges API's wire constants: page sizes, accepted body keys, final run statuses."""

from __future__ import annotations

from datetime import timedelta

WORKSPACE_UID = "ws-sandbox-0001"

USER_UID = "usr-sandbox-0001"

#: live page sizes (providers.md §1.2)
PAGE_SIZES = {
    "linkedin-extract-conversations": 20,
    "linkedin-extract-messages": 20,
    "linkedin-extract-connections": 40,
    "linkedin-extract-sent-invitations": 20,
    "linkedin-search-people": 25,
}

LIST_ACTIONS = frozenset(PAGE_SIZES)

#: actions whose results can be fetched incrementally (need an engagement identity)
INCREMENTAL = frozenset({"linkedin-extract-conversations", "linkedin-extract-messages",
                         "linkedin-extract-connections"})

#: actions that run without an identity (providers.md §1.1)
NO_IDENTITY = frozenset({"linkedin-find-profile-url"})

LIVE_KEYS = frozenset({"input", "parameters", "identity_ids", "identity_mode", "custom_data"})

ASYNC_KEYS = frozenset({"inputs", "parameters", "identity_ids", "identity_mode", "callback",
                        "max_results", "custom_data"})

SCHEDULE_KEYS = ASYNC_KEYS | {"cron", "timezone", "schedule_at", "name"}

FINAL = frozenset({"SUCCEEDED", "FAILED", "PARTIAL_SUCCEEDED", "INVALID", "CANCELLED"})

CURSOR_TTL = timedelta(hours=24)
