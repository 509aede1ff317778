"""How long the simulated providers take: per call, and per LinkedAPI workflow.

Three modes (``seqrun sandbox serve --latency``, ``Sandbox.open(latency=...)``):

* ``real``: every call sleeps a draw from a log-normal distribution per provider, and a
  LinkedAPI workflow runs for a fixed part plus a part per action, like the real services
  (which drive a real browser). The figures are [inferred]: the providers document no latency.
* ``fast`` (the default, for tests): calls answer at once; a workflow takes 1 s + 1 s per
  action of world time (nothing to wait for on a virtual clock).
* ``none``: calls answer at once and a workflow is done by the next request.

``FaultConfig.latency_s`` (a fixed extra delay on every call) applies in every mode.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from engine.sandbox.world import World

MODES = ("real", "fast", "none")


@dataclass(frozen=True)
class CallLatency:
    """A log-normal call duration: its median and its spread (sigma of the log)."""

    median_s: float
    sigma: float

    def draw(self, rng: random.Random) -> float:
        return self.median_s * rng.lognormvariate(0.0, self.sigma)


#: ``real`` mode, per provider: Edges' live actions and ConnectSafely's calls act on LinkedIn
#: before answering; LinkedAPI only queues a workflow (its work is the workflow's duration).
REAL_CALLS = {
    "edges": CallLatency(2.0, 0.5),
    "connectsafely": CallLatency(1.2, 0.5),
    "linkedapi": CallLatency(0.25, 0.4),
}

#: ``real`` mode: a call that only queues work (an Edges async run; LinkedAPI's workflows)
QUEUED_CALL = CallLatency(0.25, 0.4)

#: (seconds per workflow, seconds per action) by mode
WORKFLOW_SECONDS = {"real": (15.0, 10.0), "fast": (1.0, 1.0), "none": (0.0, 0.0)}

_RNG = random.Random(0)  # latency is not part of the world: no need to replay it


def call_delay(world: World, api: str, op: str = "") -> float:
    """Real seconds a call to ``api`` (operation ``op``) takes in the world's latency mode,
    besides ``latency_s``."""
    if world.config.latency != "real" or api not in REAL_CALLS:
        return 0.0
    model = QUEUED_CALL if op.startswith("async:") else REAL_CALLS[api]
    return model.draw(_RNG)


def apply_latency(world: World, mode: str) -> None:
    """Put ``world`` in latency ``mode`` (``real``, ``fast`` or ``none``)."""
    if mode not in MODES:
        raise ValueError(f"latency must be one of {', '.join(MODES)}, not {mode!r}")
    from engine.sandbox.linkedapi.state import state  # the LinkedAPI tables live on the world

    world.config.latency = mode
    st = state(world)
    st.base_seconds, st.seconds_per_action = WORKFLOW_SECONDS[mode]
    st.dirty = True
