"""The simulated LinkedIn behind the sandbox APIs: seeded, lazy and driven by an injected clock.

Every random decision (does this lead accept, after how long, does it reply, is it already
connected, does it write first, does this call fail) comes from a ``random.Random`` seeded by a
hash of ``(seed, *key)``, so the same seed and the same calls give the same world whatever the
order in which profiles and identities were added. Nothing runs in the background: scheduled
effects (acceptances, replies, first messages, auth changes) are applied by ``_advance()`` at
the start of every public method, in time order, each stamped with its own scheduled time.

Example::

    clock = VirtualClock()
    world = World(clock, seed=7)
    world.add_identity("ident-alice", name="Alice")
    world.add_profile("https://www.linkedin.com/in/ada", first_name="Ada",
                      full_name="Ada Lovelace", company="Engines", accepts=True)
    world.connect("ident-alice", "https://linkedin.com/in/ada/", note="Hi Ada")
    clock.advance(timedelta(days=7))
    assert world.relationship("ident-alice", "https://www.linkedin.com/in/ada") == "connected"
"""

from __future__ import annotations

from engine.sandbox.world.actions import MAX_MESSAGE, MAX_NOTE
from engine.sandbox.world.config import DEFAULT_LIMITS, PROVIDER_LIMITS, FaultConfig, WorldConfig
from engine.sandbox.world.model import (
    Delivery,
    Event,
    FaultPlan,
    IdentityState,
    Invitation,
    Message,
    Profile,
    Thread,
    WorldError,
)
from engine.sandbox.world.persistence import Persistence
from engine.sandbox.world.times import DAY, iso, parse_iso, week_start
from engine.sandbox.world.urls import normalize_url

__all__ = [
    "DAY",
    "DEFAULT_LIMITS",
    "MAX_MESSAGE",
    "MAX_NOTE",
    "PROVIDER_LIMITS",
    "Delivery",
    "Event",
    "FaultConfig",
    "FaultPlan",
    "IdentityState",
    "Invitation",
    "Message",
    "Profile",
    "Thread",
    "World",
    "WorldConfig",
    "WorldError",
    "iso",
    "normalize_url",
    "parse_iso",
    "week_start",
]


class World(Persistence):
    """The simulated LinkedIn shared by the Edges, LinkedAPI and ConnectSafely sandbox APIs.

    Built in layers, each using only those below it: tables and seeded draws
    (:mod:`.state`), conversations, the timeline of scheduled events, profiles, identities,
    limits, actions, reads, faults, ground truth, persistence."""
