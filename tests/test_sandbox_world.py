"""The simulated LinkedIn (engine.sandbox.world): determinism, edge cases, limits, auth, faults."""

from __future__ import annotations

import contextlib
import json
from datetime import timedelta

import pytest

from engine.clock import VirtualClock
from engine.sandbox.world import (
    Delivery,
    FaultConfig,
    FaultPlan,
    World,
    WorldError,
    normalize_url,
)
from tests.conftest import quiet_config

ADA = "https://www.linkedin.com/in/ada"
BOB = "https://www.linkedin.com/in/bob"


def make(seed: int = 1, **kw: object) -> tuple[VirtualClock, World]:
    clock = VirtualClock()
    world = World(clock, seed=seed, config=quiet_config(**kw))
    world.add_identity("me")
    return clock, world


def err(fn: object, *args: object) -> WorldError:
    with pytest.raises(WorldError) as info:
        fn(*args)  # type: ignore[operator]
    return info.value


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://www.linkedin.com/in/Ada-Lovelace/", "https://www.linkedin.com/in/ada-lovelace"),
        ("http://linkedin.com/in/ada?utm=1#x", "https://www.linkedin.com/in/ada"),
        ("linkedin.com/in/ada", "https://www.linkedin.com/in/ada"),
        ("https://fr.linkedin.com/pub/ada-l/1/2/3", "https://www.linkedin.com/in/ada-l"),
        ("https://www.linkedin.com/sales/people/ACwAA1,NAME", "https://www.linkedin.com/in/acwaa1"),
        ("https://www.linkedin.com/sales/lead/ACwAA2", "https://www.linkedin.com/in/acwaa2"),
    ],
)
def test_normalize_url(raw: str, expected: str) -> None:
    assert normalize_url(raw) == expected


@pytest.mark.parametrize("raw", ["", "https://example.com/in/ada",
                                 "https://www.linkedin.com/company/x", "ftp://linkedin.com/in/a"])
def test_normalize_url_refuses(raw: str) -> None:
    assert err(normalize_url, raw).label == "INVALID_INPUT"


def test_sales_navigator_url_reaches_the_same_profile() -> None:
    _, w = make()
    p = w.add_profile(ADA)
    sales_url = f"https://www.linkedin.com/sales/lead/{p.sales_navigator_profile_id},x"
    assert w.visit("me", sales_url).url == ADA


def test_invite_accept_message_reply_flow() -> None:
    clock, w = make(accept_delay_hours=(1, 1), reply_delay_hours=(2, 2))
    w.add_profile(ADA, accepts=True, replies=True)
    assert err(w.message, "me", ADA, "hi").label == "NOT_CONNECTED"
    w.connect("me", ADA, "hello")
    assert w.relationship("me", ADA) == "pending"
    assert err(w.connect, "me", ADA).label == "INVITATION_PENDING"
    clock.advance(timedelta(minutes=59))
    assert w.relationship("me", ADA) == "pending"
    clock.advance(timedelta(minutes=1))
    assert w.relationship("me", ADA) == "connected"
    assert err(w.connect, "me", ADA).label == "ALREADY_CONNECTED"
    thread = w.message("me", ADA, "thanks")
    assert [m.from_us for m in thread.messages] == [True]
    clock.advance(timedelta(hours=2))
    (conv,) = w.conversations("me")
    assert conv.last_message.from_us is False
    assert conv.last_message.created_at == clock.now()  # stamped at its scheduled time
    assert [d.kind for d in w.delivered] == ["invite", "message"]


def test_no_reply_before_we_message_and_refusers_never_accept() -> None:
    clock, w = make()
    w.add_profile(ADA, accepts=False, replies=True)
    w.connect("me", ADA)
    clock.advance(timedelta(days=30))
    assert w.relationship("me", ADA) == "pending"
    assert w.conversations("me") == []


def test_withdraw_cancels_a_scheduled_acceptance() -> None:
    clock, w = make(accept_delay_hours=(5, 5))
    w.add_profile(ADA, accepts=True)
    w.connect("me", ADA)
    w.withdraw("me", ADA)
    assert err(w.withdraw, "me", ADA).label == "NOT_PENDING"
    clock.advance(timedelta(days=1))
    assert w.relationship("me", ADA) == "none"


def test_edge_cases_on_demand() -> None:
    _clock, w = make(writes_first_delay_hours=(0, 0))
    w.add_profile(ADA, already_connected_with=["me"])
    w.add_profile(BOB, writes_first_to=["me"])
    w.add_profile("https://www.linkedin.com/in/gone", accessible=False)
    assert w.relationship("me", ADA) == "connected"
    assert err(w.connect, "me", ADA).label == "ALREADY_CONNECTED"
    (conv,) = w.conversations("me")
    assert conv.profile_url == BOB and conv.first_sender_is_us is False
    w.message("me", BOB, "hi back")  # an existing conversation allows messaging
    for fn, args in [(w.visit, ()), (w.connect, ()), (w.message, ("x",))]:
        assert err(fn, "me", "https://www.linkedin.com/in/gone", *args).label == (
            "PROFILE_NOT_ACCESSIBLE")


def test_unknown_profiles_are_refused_without_auto_create() -> None:
    _, w = make(auto_create_profiles=False)
    assert err(w.visit, "me", ADA).label == "PROFILE_NOT_ACCESSIBLE"


def test_smart_limit_rolling_window_with_postponed_until() -> None:
    clock, w = make()
    w.config.limits["classic"]["visit"] = 3
    start = clock.now()
    for i in range(3):
        w.visit("me", f"https://www.linkedin.com/in/p{i}")
        clock.advance(timedelta(hours=1))
    e = err(w.visit, "me", ADA)
    assert e.label == "LIMIT_REACHED"
    assert e.params["postponed_until"] == (start + timedelta(hours=24)).isoformat().replace(
        "+00:00", "Z")
    assert w.count("me", "visit") == 3  # the refused visit was not delivered
    clock.set(start + timedelta(hours=24))
    w.visit("me", ADA)  # the oldest visit left the window


def test_sales_navigator_and_identity_limits() -> None:
    _, w = make()
    sn = w.add_identity("sn", kind="sales_navigator")
    w.add_identity("capped", limits={"message": 0})
    assert w.limit_for(sn.uid, "visit") == 500 and w.limit_for(sn.uid, "connect") == 30
    w.add_profile(ADA, already_connected_with=["capped"])
    assert err(w.message, "capped", ADA, "hi").label == "LIMIT_REACHED"
    assert err(w.inmail, "me", ADA, "s", "t").label == "SN_ACCOUNT_UPGRADE"
    w.inmail("sn", ADA, "subject", "text")
    assert w.messages_to("sn", ADA)[0].kind == "inmail"


def test_auth_expiry_then_reauth_with_integration_events() -> None:
    clock = VirtualClock()
    t0 = clock.now()
    faults = FaultConfig(auth_expire_at={"me": t0 + timedelta(hours=1)},
                         reauth_at={"me": t0 + timedelta(hours=3)})
    w = World(clock, config=quiet_config(faults=faults))
    w.add_identity("me")
    w.visit("me", ADA)
    clock.advance(timedelta(hours=2))
    assert err(w.visit, "me", ADA).label == "AUTH_EXPIRED"
    assert [e["event"] for e in w.integration_events] == ["AUTH_EXPIRED"]
    clock.advance(timedelta(hours=1))
    w.visit("me", ADA)
    w.set_auth("me", False)
    assert not w.auth_ok("me")
    w.set_auth("me", True)
    assert [e["event"] for e in w.integration_events] == [
        "AUTH_EXPIRED", "AUTH_SUCCESS", "AUTH_EXPIRED", "AUTH_SUCCESS"]


def _script(world: World, clock: VirtualClock) -> None:
    world.add_identity("a")
    world.populate(40)
    for url in sorted(world.profiles)[:30]:
        with contextlib.suppress(WorldError):
            world.connect("a", url)
    clock.advance(timedelta(days=4))
    for profile, _ in world.connections("a"):
        world.message("a", profile.url, "hi")
    clock.advance(timedelta(days=3))


def _state(world: World) -> str:
    data = world.to_json()
    return json.dumps(data, sort_keys=True)


def test_same_seed_and_calls_give_the_same_world() -> None:
    c1, c2, c3 = VirtualClock(), VirtualClock(), VirtualClock()
    w1, w2, w3 = World(c1, seed=5), World(c2, seed=5), World(c3, seed=6)
    for w, c in ((w1, c1), (w2, c2), (w3, c3)):
        _script(w, c)
    assert _state(w1) == _state(w2)
    assert _state(w1) != _state(w3)
    assert w1.count(kind="message") > 0  # the script exercised acceptances


def test_behaviour_does_not_depend_on_insertion_order() -> None:
    c1, c2 = VirtualClock(), VirtualClock()
    w1, w2 = World(c1, seed=9), World(c2, seed=9)
    urls = [f"https://www.linkedin.com/in/lead-{i}" for i in range(30)]
    w1.add_identity("a")
    for u in urls:
        w1.add_profile(u, already_connected_with=None, writes_first_to=None)
    for u in reversed(urls):
        w2.add_profile(u, already_connected_with=None, writes_first_to=None)
    w2.add_identity("a")
    assert {p.url for p, _ in w1.connections("a")} == {p.url for p, _ in w2.connections("a")}


def test_json_round_trip_keeps_pending_events() -> None:
    clock, w = make(accept_delay_hours=(10, 10))
    w.add_profile(ADA, accepts=True)
    w.connect("me", ADA)
    w2 = World.from_json(json.loads(json.dumps(w.to_json())), clock)
    assert _state(w2) == _state(w)
    clock.advance(timedelta(hours=10))
    assert w2.relationship("me", ADA) == "connected"
    assert isinstance(w2.delivered[0], Delivery)


def test_faults_are_seeded_and_timeouts_split_before_after() -> None:
    def draws(seed: int) -> list[FaultPlan | None]:
        w = World(VirtualClock(), seed=seed,
                  config=quiet_config(
                      faults=FaultConfig(rate_429=0.2, rate_5xx=0.2, rate_timeout=0.3)))
        return [w.fault_plan("edges", "op") for _ in range(300)]

    a, b = draws(3), draws(3)
    assert a == b
    kinds = {p.kind for p in a if p is not None}
    assert kinds == {"429", "5xx", "timeout"}
    afters = {p.after for p in a if p is not None and p.kind == "timeout"}
    assert afters == {True, False}
    assert World(VirtualClock()).maybe_fault("edges", "op") is None


def test_duplicates_report_a_message_sent_twice() -> None:
    _, w = make()
    w.add_profile(ADA, already_connected_with=["me"])
    w.message("me", ADA, "hello")
    assert w.duplicates() == []
    w.message("me", ADA, "hello")
    assert w.duplicates() == [("me", ADA, "hello", 2)]


def test_search_people_and_populate_from_csv(tmp_path: object) -> None:
    from pathlib import Path

    csv_path = Path(str(tmp_path)) / "leads.csv"
    csv_path.write_text("linkedin_profile_url,full_name,first_name,company_name\n"
                        "https://www.linkedin.com/in/ada-x,Ada Lovelace,Ada,Engines\n"
                        "not a url,Bad,Bad,Bad\n")
    _, w = make()
    (p,) = w.populate_from_csv(csv_path)
    assert (p.full_name, p.company) == ("Ada Lovelace", "Engines")
    assert [x.url for x in w.search_people("lovelace engines")] == [p.url]


def test_connections_read_back_every_change_newest_and_last_written_first() -> None:
    # the sorted list is kept between reads: each write must show in the next read
    clock, world = make()
    for name in ("ada", "bob", "cy"):
        world.add_profile(f"https://www.linkedin.com/in/{name}", first_name=name)
    urls = lambda: [p.url for p, _ in world.connections_of("me")]  # noqa: E731
    assert urls() == []
    world._connect("me", ADA, clock.now())
    world._connect("me", BOB, clock.now())  # the same instant: written last, listed first
    assert urls() == [BOB, ADA]
    world.remove_connection("me", BOB)
    assert urls() == [ADA]
    clock.advance(timedelta(minutes=1))
    world._connect("me", "https://www.linkedin.com/in/cy", clock.now())
    assert urls() == ["https://www.linkedin.com/in/cy", ADA]
    listed = world.connections_of("me")
    listed.clear()  # a caller's copy: the world's own list is untouched
    assert urls() == ["https://www.linkedin.com/in/cy", ADA]
