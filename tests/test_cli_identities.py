"""`seqrun identities list|show|check|add` against the embedded sandbox's three providers:
the identities each provider lists, their health (an AUTH_EXPIRED made in the world, a pause
of ours), limits, and the usage counted from the store after a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.sandbox import Sandbox  # type: ignore[attr-defined,unused-ignore]
from engine.store import Store
from tests.conftest import SHARED_EXAMPLES, invoke

FOUNDERS = SHARED_EXAMPLES / "founders-on-linkedapi.yaml"


def as_json(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> Any:
    got, out, err = invoke(capsys, *argv, "-o", "json")
    assert got == code, err
    return json.loads(out)


def by_id(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["id"]: i for i in data["identities"]}


def test_list_json_covers_the_three_providers(
    cli_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = as_json(capsys, "identities", "list", "--sandbox")
    ids = by_id(data)
    assert {(i, v["provider"]) for i, v in ids.items()} >= {
        ("ident-alice", "edges"), ("ident-bob", "edges"), ("acct-alice", "linkedapi"),
        ("acc_12345", "connectsafely")}
    assert all(v["health"] == "active" and v["listed"] for v in ids.values())
    assert data["skipped"] == {}
    assert ids["ident-alice"]["tier"] == "classic" and ids["ident-alice"]["name"] == "Alice Martin"
    # Edges and LinkedAPI report their own limits; ConnectSafely's are its documented ones
    assert ids["ident-alice"]["limits"]["connect"] == 25
    assert ids["acct-alice"]["limits"]["connect"] == 10
    assert ids["acc_12345"]["limits"] == {"connect": 12, "send_message": 100}


def test_auth_expired_in_the_world_shows_and_check_fails(
    cli_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert invoke(capsys, "identities", "list", "--sandbox")[0] == 0  # makes the world
    box = Sandbox.open(cli_dir / ".seqrun")
    for uid in ("ident-bob", "acct-alice", "acc_12345"):
        box.world.set_auth(uid, False)
    box.save()
    box.close()
    ids = by_id(as_json(capsys, "identities", "list", "--sandbox"))
    assert {i: v["health"] for i, v in ids.items()} == {
        "ident-alice": "active", "ident-bob": "AUTH_EXPIRED", "acct-alice": "AUTH_EXPIRED",
        "acc_12345": "AUTH_EXPIRED"}
    checked = by_id(as_json(capsys, "identities", "check", "--sandbox", code=1))
    assert checked["ident-bob"]["checked"] == "unhealthy"
    assert checked["ident-alice"]["checked"] == "healthy"


def test_a_paused_identity_and_without_credentials(
    cli_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.open(None, cli_dir / ".seqrun")
    store.put_identity("ident-bob", "edges")  # what the runner does on its first call
    store.close()
    code, _, err = invoke(capsys, "pause", "--identity", "ident-bob")
    assert code == 0, err
    ids = by_id(as_json(capsys, "identities", "list", "--sandbox"))
    assert ids["ident-bob"]["health"] == "paused"
    # no credentials, no sandbox: nothing asked, each provider named with the variable
    for var in ("EDGES_API_KEY", "LINKEDAPI_TOKEN", "CONNECTSAFELY_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    data = as_json(capsys, "identities", "list")
    assert set(data["skipped"]) == {"edges", "linkedapi", "connectsafely"}
    assert "EDGES_API_KEY" in data["skipped"]["edges"]
    assert [(i["id"], i["health"], i["listed"]) for i in data["identities"]] == [
        ("ident-bob", "paused", False)]


def test_usage_after_a_run_and_show(cli_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = invoke(capsys, "apply", str(FOUNDERS), "--sandbox", "--virtual-clock",
                          "--auto-approve")
    assert code == 0, err
    code, _, err = invoke(capsys, "run", "--sandbox", "--virtual-clock", "--until", "+2d")
    assert code == 0, err
    world = Sandbox.open(cli_dir / ".seqrun").world
    invites = world.count("acct-alice", "invite")
    assert invites > 0
    view = as_json(capsys, "identities", "show", "acct-alice", "--sandbox")
    assert view["used_7d"]["connect"] == invites  # every invitation the world saw, once
    assert view["provider_used_24h"]["connect"] <= invites
    code, out, _ = invoke(capsys, "identities", "show", "acct-alice", "--sandbox")
    assert code == 0 and "connect" in out and "AUTH" not in out
    code, _, err = invoke(capsys, "identities", "show", "nobody", "--sandbox")
    assert code != 0 and "no identity 'nobody'" in err


def test_add_creates_an_edges_identity_with_its_link(
    cli_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    made = as_json(capsys, "identities", "add", "Dana Field", "--sandbox")
    assert made["provider"] == "edges" and made["integration_link"].startswith("https://")
    ids = by_id(as_json(capsys, "identities", "list", "--sandbox"))
    assert ids[made["id"]]["name"] == "Dana Field" and ids[made["id"]]["health"] == "active"
    world = Sandbox.open(cli_dir / ".seqrun").world
    assert world.identity(made["id"]).type == "engagement"
