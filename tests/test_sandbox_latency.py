"""Latency modes (real | fast | none) and the fault knobs' types."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from engine.clock import VirtualClock
from engine.sandbox import Sandbox
from engine.sandbox.latency import REAL_CALLS, apply_latency, call_delay
from engine.sandbox.linkedapi.state import state
from engine.sandbox.scenario import world_from_scenario

ADA = "https://www.linkedin.com/in/ada-lovelace-0001"


async def test_faults_keep_a_fractional_latency_after_an_integer_one() -> None:
    """A scenario's `latency_s: 0` loads an int; /_sandbox/faults converted 1.7 to it (1)."""
    world = world_from_scenario({"faults": {"latency_s": 0}}, VirtualClock())
    async with Sandbox(world).client("inspect") as inspect:
        out = (await inspect.post("faults", json={"latency_s": 1.7, "retry_after_s": 5})).json()
    assert out["latency_s"] == 1.7 and world.config.faults.latency_s == 1.7
    assert out["retry_after_s"] == 5


@pytest.mark.parametrize(("mode", "seconds_running"), [("none", 0), ("fast", 2), ("real", 25)])
async def test_a_workflow_runs_as_long_as_its_latency_mode_says(
        mode: str, seconds_running: int) -> None:
    clock = VirtualClock()
    sandbox = Sandbox.open(None, clock=clock, profiles=0)
    apply_latency(sandbox.world, mode)
    sandbox.world.config.latency = "fast"  # keep the mode's workflow durations, skip real sleeps
    async with sandbox.client("linkedapi") as api:
        r = await api.post("workflows", json={"actionType": "st.checkConnectionStatus",
                                              "personUrl": ADA})
        wid = r.json()["result"]["workflowId"]
        if seconds_running:
            clock.advance(timedelta(seconds=seconds_running - 0.5))
            r = await api.get(f"workflows/{wid}")
            assert r.json()["result"]["workflowStatus"] == "running"
            clock.advance(timedelta(seconds=0.5))
        r = await api.get(f"workflows/{wid}")
        assert r.json()["result"]["workflowStatus"] == "completed"


def test_only_real_mode_delays_calls_per_provider() -> None:
    world = Sandbox.open(None, clock=VirtualClock(), profiles=0).world
    assert call_delay(world, "edges") == 0.0
    apply_latency(world, "real")
    assert world.config.latency == "real"
    assert all(call_delay(world, api) > 0 for api in REAL_CALLS)
    with pytest.raises(ValueError, match="latency must be one of"):
        apply_latency(world, "slow")


def test_serve_names_the_latency_modes(capsys: pytest.CaptureFixture[str]) -> None:
    from engine.cli import main

    assert main(["sandbox", "serve", "--port", "0", "--latency", "slow"]) == 2
    err = capsys.readouterr().err
    assert "--latency" in err and "'real', 'fast', 'none'" in err


async def test_a_latency_mode_is_kept_with_the_world(tmp_path: Path) -> None:
    sandbox = Sandbox.open(tmp_path, clock=VirtualClock(), profiles=0)
    async with sandbox.client("linkedapi") as api:  # the LinkedAPI tables exist and are saved
        await api.get("account")
    apply_latency(sandbox.world, "none")
    async with sandbox.client("linkedapi") as api:
        await api.get("account")
    sandbox.save()
    again = Sandbox.open(tmp_path)
    assert again.world.config.latency == "none"
    assert (state(again.world).base_seconds, state(again.world).seconds_per_action) == (0, 0)
