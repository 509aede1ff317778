"""Workflow rules: the provider, and each node's action. A LinkedAPI workflow names LinkedAPI
action types (or canonical actions, translated through :data:`engine.vocab.LINKEDAPI_ACTIONS`);
any other provider runs canonical actions only."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from engine.manifest.explain import did_you_mean
from engine.manifest.lint.common import Report, unsupported
from engine.manifest.lint.sequence import check_window
from engine.manifest.yamlio import child_path
from engine.model import Workflow, WorkflowNode
from engine.providers import REGISTRY
from engine.providers.base import ProviderSpec
from engine.vocab import CANONICAL_ACTIONS, LINKEDAPI_ACTIONS

# LinkedAPI action types (providers.md §2.4) -> whether the action takes `personUrl`.
LINKEDAPI_ACTION_TYPES: Mapping[str, bool] = {
    "st.checkConnectionStatus": True,
    "st.sendMessage": True,
    "st.syncConversation": True,
    "st.sendConnectionRequest": True,
    "st.withdrawConnectionRequest": True,
    "st.removeConnection": True,
    "st.openPersonPage": True,
    "st.retrievePendingRequests": False,
    "st.retrieveConnections": False,
    "st.searchPeople": False,
    "st.retrievePersonExperience": False,
    "st.retrievePersonEducation": False,
    "st.retrievePersonSkills": False,
    "st.retrievePersonLanguages": False,
    "st.retrievePersonPosts": False,
    "st.retrievePersonComments": False,
    "st.retrievePersonReactions": False,
    "st.doForPeople": False,
    "st.openCompanyPage": False,
    "st.retrieveCompanyEmployees": False,
    "st.retrieveCompanyDMs": False,
    "st.retrieveCompanyPosts": False,
    "st.searchCompanies": False,
    "st.doForCompanies": False,
    "st.openPost": False,
    "st.retrievePostComments": False,
    "st.retrievePostReactions": False,
    "st.reactToPost": False,
    "st.commentOnPost": False,
    "st.createPost": False,
    "st.searchJobs": False,
    "st.openJob": False,
    "st.retrieveSSI": False,
    "st.retrievePerformance": False,
    "nv.sendMessage": True,
    "nv.syncConversation": True,
    "nv.searchPeople": False,
    "nv.searchCompanies": False,
    "nv.openPersonPage": False,  # takes personHashedUrl
    "nv.openCompanyPage": False,
}
_LINKEDAPI_NOTE_ACTIONS = frozenset({"st.sendConnectionRequest"})
_LINKEDAPI_TEXT_ACTIONS = frozenset({"st.sendMessage", "nv.sendMessage"})


def _walk(roots: tuple[WorkflowNode, ...]) -> Iterator[tuple[WorkflowNode, bool]]:
    """Every node with whether it is a root start, depth first, iteratively."""
    stack: list[tuple[WorkflowNode, bool]] = [(n, True) for n in reversed(roots)]
    while stack:
        node, is_root = stack.pop()
        yield node, is_root
        stack.extend((child, False) for child in reversed(node.then))


def lint_workflow(wf: Workflow, report: Report) -> None:
    spec = REGISTRY.get(wf.provider)
    if spec is None:
        report(
            "$.spec.provider",
            f"unknown provider {wf.provider!r}{did_you_mean(wf.provider, REGISTRY)}",
        )
        return
    if wf.result_handling == "hook":
        report(
            "$.spec.result_handling",
            "result_handling: hook needs a receiver for the webhook; seqrun status shows it "
            "running until then",
            "warning",
        )
    check_window(wf.window, report)
    for node, is_root in _walk(wf.root):
        if spec.name == "linkedapi":
            _check_linkedapi_node(node, is_root, spec, report)
        else:
            _check_canonical_node(node, spec, report)


def _check_canonical_node(node: WorkflowNode, spec: ProviderSpec, report: Report) -> None:
    """A node of a provider that runs canonical actions only."""
    apath = child_path(node.path, "action")
    if node.action in CANONICAL_ACTIONS:
        if node.action not in spec.capabilities:
            report(apath, unsupported(node.action, spec))
    elif node.action in LINKEDAPI_ACTION_TYPES:
        report(
            apath,
            f"{node.action!r} is a LinkedAPI action type; provider {spec.name!r} runs "
            f"canonical actions ({', '.join(sorted(spec.capabilities))})",
        )
    else:
        report(
            apath,
            f"unknown action {node.action!r}{did_you_mean(node.action, sorted(spec.capabilities))}",
        )


def _check_linkedapi_node(
    node: WorkflowNode, is_root: bool, spec: ProviderSpec, report: Report
) -> None:
    """A LinkedAPI node: a known action type, ``personUrl`` on roots only, texts in length."""
    apath = child_path(node.path, "action")
    kind = LINKEDAPI_ACTIONS.get(node.action, node.action)
    if node.action in CANONICAL_ACTIONS and node.action not in spec.capabilities:
        report(apath, unsupported(node.action, spec))
        return
    if kind not in LINKEDAPI_ACTION_TYPES:
        known = [*LINKEDAPI_ACTION_TYPES, *CANONICAL_ACTIONS]
        report(
            apath,
            f"unknown LinkedAPI action type {node.action!r}{did_you_mean(node.action, known)}",
        )
        return
    with_path = child_path(node.path, "with")
    if is_root and LINKEDAPI_ACTION_TYPES[kind] and "personUrl" not in node.with_:
        report(with_path, f"{node.action!r} at the root of a workflow needs with.personUrl")
    if not is_root and "personUrl" in node.with_:
        report(
            child_path(with_path, "personUrl"),
            f"personUrl is only allowed on a root action; {node.action!r} acts on the person "
            "its parent opened",
        )
    note = node.with_.get("note")
    if kind in _LINKEDAPI_NOTE_ACTIONS and isinstance(note, str):
        _check_node_length(node, "note", "connection note", note, spec.max_note, spec, report)
    text = node.with_.get("text")
    if kind in _LINKEDAPI_TEXT_ACTIONS and isinstance(text, str):
        _check_node_length(node, "text", "message", text, spec.max_message, spec, report)


def _check_node_length(
    node: WorkflowNode,
    key: str,
    what: str,
    text: str,
    limit: int,
    spec: ProviderSpec,
    report: Report,
) -> None:
    if len(text) > limit:
        report(
            child_path(child_path(node.path, "with"), key),
            f"{what} is {len(text)} characters, over the {limit} that {spec.name} accepts",
        )
