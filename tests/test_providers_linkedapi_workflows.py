"""workflow_json: the exact LinkedAPI body (seed 003)."""

from __future__ import annotations

import json
import re

import pytest

from engine.model import Metadata, Workflow, WorkflowNode
from engine.providers.linkedapi.workflows import workflow_json
from tests.conftest import SEEDS, SHARED_EXAMPLES

CHILD = {"actionType": "st.sendMessage", "text": "Hello!"}


def _seed_example() -> str:
    """The example body of seed 003, with its `{ ... }` placeholder filled by CHILD."""
    if not SEEDS.is_dir():
        pytest.skip("shared seeds are not beside the project")
    (seed,) = SEEDS.glob("003_*.txt")
    text = seed.read_text()
    match = re.search(r"for example:\n(\{.*?\n\})\n", text, re.S)
    assert match, "seed 003 example not found"
    return match.group(1).replace("{ ... }", json.dumps(CHILD))


def test_seed_003_example_is_reproduced_exactly() -> None:
    wf = Workflow(
        Metadata("seed-003"),
        "linkedapi",
        (
            WorkflowNode(
                "st.checkConnectionStatus",
                {"personUrl": "https://www.linkedin.com/in/person1"},
                label="person1",
                then=(WorkflowNode("st.sendMessage", {"text": "Hello!"}),),
            ),
        ),
    )
    expected = json.loads(_seed_example())
    out = workflow_json(wf)
    assert out == expected
    # same key order too, so the JSON text we send reads like the documented one
    assert json.dumps(out) == json.dumps(expected)


def test_canonical_actions_map_to_action_types_and_array_root() -> None:
    url = "https://www.linkedin.com/in/ada"
    wf = Workflow(
        Metadata("canon"),
        "linkedapi",
        (
            WorkflowNode(
                "visit_profile",
                {"profile_url": url},
                then=(WorkflowNode("check_connection"),),
                then_is_list=True,
            ),
            WorkflowNode("connect", {"personUrl": url, "note": "hi"}),
            WorkflowNode("send_message", {"personUrl": url, "message": "yo"}),
            WorkflowNode("withdraw_invitation", {"personUrl": url}),
        ),
        root_is_list=True,
    )
    assert workflow_json(wf) == [
        {
            "actionType": "st.openPersonPage",
            "personUrl": url,
            "then": [{"actionType": "st.checkConnectionStatus"}],
        },
        {"actionType": "st.sendConnectionRequest", "personUrl": url, "note": "hi"},
        {"actionType": "st.sendMessage", "personUrl": url, "text": "yo"},
        {"actionType": "st.withdrawConnectionRequest", "personUrl": url},
    ]


def test_single_root_in_a_list_stays_an_array_workflow() -> None:
    wf = Workflow(
        Metadata("one"),
        "linkedapi",
        (WorkflowNode("st.retrievePendingRequests"),),
        root_is_list=True,
    )
    assert workflow_json(wf) == [{"actionType": "st.retrievePendingRequests"}]


def test_example_manifest_check_then_message() -> None:
    loader = pytest.importorskip("engine.manifest.loader")
    examples = SHARED_EXAMPLES
    manifests = loader.load([examples / "check-then-message.yaml"])
    (wf,) = manifests
    assert workflow_json(wf) == {
        "actionType": "st.openPersonPage",
        "personUrl": "https://www.linkedin.com/in/ada-lovelace-0001",
        "basicInfo": True,
        "label": "open",
        "then": [
            {"actionType": "st.checkConnectionStatus", "label": "check"},
            {
                "actionType": "st.sendConnectionRequest",
                "note": "Hello Ada, I enjoyed your notes on the Analytical Engine.",
                "label": "invite",
            },
        ],
    }
