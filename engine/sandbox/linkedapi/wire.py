"""The simulated LinkedAPI's wire vocabulary: tokens, caps, action types and their parameters,
error types."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from engine.sandbox.common import CREDENTIALS

SANDBOX_TOKEN = CREDENTIALS["linkedapi"]["LINKEDAPI_TOKEN"]

IDENT_PREFIX = "sbx-idt-"

KEEP_FINISHED = timedelta(days=7)  # finished workflows are forgotten after this (simulated)

UNFINISHED_CAP = 10

MAX_TEXT = 1900

MAX_NOTE = 300

PERSON_ACTIONS = frozenset(
    {
        "st.openPersonPage",
        "st.checkConnectionStatus",
        "st.sendConnectionRequest",
        "st.withdrawConnectionRequest",
        "st.sendMessage",
        "st.syncConversation",
    }
)

LIST_ACTIONS = frozenset(
    {"st.retrieveConnections", "st.retrievePendingRequests", "st.searchPeople"}
)

# Parameters each action accepts (besides actionType, label, then).
PARAMS: Mapping[str, frozenset[str]] = {
    "st.openPersonPage": frozenset({"personUrl", "basicInfo"}),
    "st.checkConnectionStatus": frozenset({"personUrl"}),
    "st.sendConnectionRequest": frozenset({"personUrl", "note", "email"}),
    "st.withdrawConnectionRequest": frozenset({"personUrl", "unfollow"}),
    "st.sendMessage": frozenset({"personUrl", "text"}),
    "st.syncConversation": frozenset({"personUrl"}),
    "st.retrieveConnections": frozenset({"limit", "since", "filter"}),
    "st.retrievePendingRequests": frozenset(),
    "st.searchPeople": frozenset({"term", "limit", "filter", "customSearchUrl"}),
}

# World (Edges-style) labels -> LinkedAPI action error types, per action type.
ACTION_ERRORS: Mapping[str, str] = {
    "PROFILE_NOT_ACCESSIBLE": "personNotFound",
    "INVALID_INPUT": "personNotFound",
    "ALREADY_CONNECTED": "alreadyConnected",
    "INVITATION_PENDING": "alreadyPending",
    "NOTE_TOO_LONG": "noteTooLong",
    "NOT_CONNECTED": "messagingNotAllowed",
    "NOT_PENDING": "notPending",
    "LIMIT_REACHED": "limitExceeded",  # [inferred] LinkedAPI names no per-action limit error
    "SELF": "selfProfileNotAllowed",
}

INVALID_WORKFLOW_MESSAGE = (
    "Workflow configuration doesn't meet the constraints of one or more actions."
)
