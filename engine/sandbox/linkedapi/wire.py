"""The simulated LinkedAPI's wire vocabulary: tokens, caps, action types and their parameters,
error types."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from engine.sandbox.common import CREDENTIALS

SANDBOX_TOKEN = CREDENTIALS["linkedapi"]["LINKEDAPI_TOKEN"]

IDENT_PREFIX = "sbx-idt-"

KEEP_FINISHED = timedelta(days=7)  # finished workflows are forgotten after this (simulated)

UNFINISHED_CAP = 10

MAX_TEXT = 1900

MAX_NOTE = 300

@dataclass(frozen=True)
class ActionSpec:
    """What one action type takes and where it may stand in a workflow.

    ``needs`` is the context the action runs in (``person``, ``company``, ``post``, ``people``,
    ``companies``); at the root its ``target`` parameter names that person, company or post
    and inside a parent giving that context the target is forbidden. ``provides`` is the
    context its children run in (no children without one). ``child_only`` actions cannot
    start a workflow; ``nv`` ones need a Sales Navigator account."""

    params: frozenset[str]
    target: str | None = None
    needs: str | None = None
    provides: str | None = None
    child_only: bool = False
    nv: bool = False


def _person(*params: str, provides: str | None = "person", nv: bool = False,
            target: str = "personUrl") -> ActionSpec:
    return ActionSpec(frozenset({target, *params}), target, "person", provides, nv=nv)


def _child(needs: str, *params: str, provides: str | None = None, nv: bool = False
           ) -> ActionSpec:
    return ActionSpec(frozenset(params), None, needs, provides, child_only=True, nv=nv)


def _root(*params: str, provides: str | None = None, nv: bool = False) -> ActionSpec:
    return ActionSpec(frozenset(params), None, None, provides, nv=nv)


_SEARCH = ("term", "limit", "filter", "customSearchUrl")

#: Every action type of the official SDK (25 operations) and of the docs' custom workflows.
ACTIONS: Mapping[str, ActionSpec] = {
    "st.openPersonPage": _person("basicInfo"),
    "st.checkConnectionStatus": _person(),
    "st.sendConnectionRequest": _person("note", "email"),
    "st.withdrawConnectionRequest": _person("unfollow"),
    "st.removeConnection": _person(),
    "st.sendMessage": _person("text"),
    "st.syncConversation": _person(),
    "st.retrievePersonExperience": _child("person"),
    "st.retrievePersonEducation": _child("person"),
    "st.retrievePersonSkills": _child("person"),
    "st.retrievePersonLanguages": _child("person"),
    "st.retrievePersonPosts": _child("person", "limit", "since"),
    "st.retrievePersonComments": _child("person", "limit", "since"),
    "st.retrievePersonReactions": _child("person", "limit", "since"),
    "st.retrieveConnections": _root("limit", "since", "filter", provides="people"),
    "st.retrievePendingRequests": _root(),
    "st.searchPeople": _root(*_SEARCH, provides="people"),
    "st.doForPeople": _child("people", provides="person"),
    "st.searchCompanies": _root(*_SEARCH, provides="companies"),
    "st.doForCompanies": _child("companies", provides="company"),
    "st.openCompanyPage": ActionSpec(frozenset({"companyUrl", "basicInfo"}), "companyUrl",
                                     "company", "company"),
    "st.retrieveCompanyEmployees": _child("company", "limit", "filter"),
    "st.retrieveCompanyDMs": _child("company", "limit"),
    "st.retrieveCompanyPosts": _child("company", "limit", "since"),
    "st.openPost": ActionSpec(frozenset({"postUrl", "basicInfo"}), "postUrl", "post", "post"),
    "st.retrievePostComments": _child("post", "limit", "replies", "sort"),
    "st.retrievePostReactions": _child("post", "limit"),
    "st.reactToPost": ActionSpec(frozenset({"postUrl", "type", "companyUrl"}), "postUrl", "post"),
    "st.commentOnPost": ActionSpec(frozenset({"postUrl", "text", "companyUrl"}), "postUrl",
                                   "post"),
    "st.createPost": _root("text", "attachments", "companyUrl"),
    "st.retrieveSSI": _root(),
    "st.retrievePerformance": _root(),
    "nv.openPersonPage": _person("basicInfo", target="personHashedUrl", nv=True),
    "nv.sendMessage": _person("text", "subject", provides=None, nv=True),
    "nv.syncConversation": _person(provides=None, nv=True),
    "nv.searchPeople": _root(*_SEARCH, provides="people", nv=True),
    "nv.searchCompanies": _root(*_SEARCH, provides="companies", nv=True),
    "nv.openCompanyPage": ActionSpec(frozenset({"companyHashedUrl", "basicInfo"}),
                                     "companyHashedUrl", "company", "company", nv=True),
    "nv.retrieveCompanyEmployees": _child("company", "limit", "filter", nv=True),
    "nv.retrieveCompanyDMs": _child("company", "limit", nv=True),
}

PERSON_ACTIONS = frozenset(k for k, v in ACTIONS.items() if v.needs == "person" and v.target)

# Parameters each action accepts (besides actionType, label, then).
PARAMS: Mapping[str, frozenset[str]] = {k: v.params for k, v in ACTIONS.items()}

#: LinkedAPI's account limit categories (admin API) -> the world's action they count.
LIMIT_CATEGORIES: Mapping[str, str] = {
    "stPersonProfileViews": "visit",
    "stCompanyPageViews": "company_visit",
    "stConnectionRequests": "connect",
    "stMessages": "message",
    "stSearchQueries": "search",
    "stReactions": "react",
    "stComments": "comment",
    "stPosts": "post",
    "nvPersonProfileViews": "nv_visit",
    "nvCompanyPageViews": "nv_company_visit",
    "nvMessages": "inmail",
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
    # LinkedAPI documents no error for an account limit other than connection requests'
    # (dailyConnectionAttemptsExceeded, set per action in execute.py); requestNotAllowed is the
    # SDK's type for "LinkedIn refuses this now" [inferred]
    "LIMIT_REACHED": "requestNotAllowed",
    "NO_COMPANY": "companyNotFound",
    "NO_POST": "postNotFound",
    "SN_ACCOUNT_UPGRADE": "noSalesNavigator",
    "SELF": "selfProfileNotAllowed",
}

INVALID_WORKFLOW_MESSAGE = (
    "Workflow configuration doesn't meet the constraints of one or more actions."
)
