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

import base64
import csv
import hashlib
import heapq
import random
import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from engine.clock import Clock

__all__ = [
    "DEFAULT_LIMITS",
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
    "normalize_url",
]

DAY = timedelta(hours=24)
IdentityKind = Literal["classic", "sales_navigator"]
IdentityType = Literal["engagement", "standard"]
DeliveryKind = Literal["visit", "invite", "withdraw", "message", "inmail", "follow"]

#: Smart limits per identity per rolling 24 h, by subscription kind.
DEFAULT_LIMITS: dict[str, dict[str, int]] = {
    "classic": {"visit": 80, "connect": 25, "message": 50, "inmail": 20, "search": 2000},
    "sales_navigator": {"visit": 500, "connect": 30, "message": 250, "inmail": 50, "search": 2000},
}
MAX_NOTE = 300
MAX_MESSAGE = 8000

_FIRST = ("Ada", "Grace", "Alan", "Katherine", "Linus", "Barbara", "Edsger", "Margaret",
          "Donald", "Frances", "Ken", "Radia", "John", "Hedy", "Tim", "Sophie", "Niklaus",
          "Shafi", "Leslie", "Marie")
_LAST = ("Lovelace", "Hopper", "Turing", "Johnson", "Torvalds", "Liskov", "Dijkstra",
         "Hamilton", "Knuth", "Allen", "Thompson", "Perlman", "McCarthy", "Lamarr", "Lee",
         "Wilson", "Wirth", "Goldwasser", "Lamport", "Curie")
_COMPANIES = ("Analytical Engines", "Compilers Inc", "Bletchley Labs", "Orbital Math",
              "Kernel Works", "Abstract Data", "Shortest Path", "Apollo Guidance",
              "Literate Programs", "Parallel Forms", "Pipes & Filters", "Spanning Tree")
_TITLES = ("Founder", "CEO", "CTO", "VP Engineering", "Head of Growth", "Sales Director",
           "Product Manager", "Staff Engineer")
_CITIES = ("London", "Paris", "Berlin", "New York", "Chicago", "Lisbon", "Amsterdam", "Madrid")
_REPLIES = ("Thanks for reaching out!", "Sounds interesting, tell me more.",
            "Not right now, maybe next quarter.", "Happy to chat, when works for you?",
            "Please remove me from your list.")
_OPENERS = ("Hi, I saw your profile and wanted to say hello.",
            "Hello! Are you hiring at the moment?", "Hey, quick question about your product.")


class WorldError(Exception):
    """A LinkedIn-side failure, labelled with the Edges error label (e.g. ``LIMIT_REACHED``)."""

    def __init__(self, label: str, message: str = "", params: Mapping[str, Any] | None = None):
        self.label = label
        self.message = message or label
        self.params: dict[str, Any] = dict(params or {})
        super().__init__(f"{label}: {self.message}")


# ----------------------------------------------------------------------------------- config


@dataclass
class FaultConfig:
    """Injected failures. Rates are probabilities per API call, drawn from the seeded RNG."""

    latency_s: float = 0.0
    rate_429: float = 0.0
    rate_5xx: float = 0.0
    rate_timeout: float = 0.0
    retry_after_s: int = 30
    #: real seconds a served sandbox hangs before answering a "timeout" (0 = answer at once)
    timeout_hang_s: float = 0.0
    auth_expire_at: dict[str, datetime] = field(default_factory=dict)
    reauth_at: dict[str, datetime] = field(default_factory=dict)


@dataclass
class WorldConfig:
    """How leads behave and how strict LinkedIn is. Delay ranges are (min, max) hours."""

    accept_probability: float = 0.6
    accept_delay_hours: tuple[float, float] = (2.0, 72.0)
    reply_probability: float = 0.3
    reply_delay_hours: tuple[float, float] = (1.0, 48.0)
    already_connected_fraction: float = 0.1
    writes_first_fraction: float = 0.05
    writes_first_delay_hours: tuple[float, float] = (0.0, 72.0)
    inaccessible_fraction: float = 0.03
    limits: dict[str, dict[str, int]] = field(
        default_factory=lambda: {k: dict(v) for k, v in DEFAULT_LIMITS.items()}
    )
    #: unknown but well-formed profile URLs become generated profiles (else PROFILE_NOT_ACCESSIBLE)
    auto_create_profiles: bool = True
    faults: FaultConfig = field(default_factory=FaultConfig)

    def limit(self, kind: str, action: str) -> int | None:
        return self.limits.get(kind, {}).get(action)


# ------------------------------------------------------------------------------------ state


@dataclass
class Profile:
    url: str  # normalized https://www.linkedin.com/in/<handle>
    handle: str
    profile_id: int
    sales_navigator_profile_id: str
    first_name: str
    last_name: str
    full_name: str
    company: str
    job_title: str = ""
    headline: str = ""
    location: str = ""
    accessible: bool = True
    accepts: bool | None = None  # None: drawn per identity from accept_probability
    replies: bool | None = None  # None: drawn per message from reply_probability
    already_connected_with: tuple[str, ...] | None = ()  # None: drawn from the fraction
    writes_first_to: tuple[str, ...] | None = ()  # None: drawn from the fraction
    generated: bool = False


@dataclass
class IdentityState:
    uid: str
    profile_id: int
    profile_url: str
    name: str
    kind: str = "classic"  # classic | sales_navigator
    type: str = "engagement"  # engagement | standard
    aliases: tuple[str, ...] = ()
    provider: str | None = None  # edges | linkedapi | connectsafely | None (all)
    limits: dict[str, int] = field(default_factory=dict)  # overrides of the config's
    # caps per calendar week (Monday 00:00 UTC), beside the rolling 24 h limits: ConnectSafely
    # documents 90 connection requests a week per account, going over puts it on a 24 h hold
    weekly_limits: dict[str, int] = field(default_factory=dict)
    auth_history: list[tuple[datetime, bool]] = field(default_factory=list)  # sorted by time
    created_at: datetime | None = None

    def auth_ok(self, now: datetime) -> bool:
        ok = True
        for at, value in self.auth_history:
            if at > now:
                break
            ok = value
        return ok


@dataclass
class Invitation:
    invitation_id: str
    identity: str
    profile_url: str
    sent_at: datetime
    note: str | None = None


@dataclass
class Message:
    message_id: str
    thread_id: str
    sender_profile_id: int
    from_us: bool
    text: str
    created_at: datetime
    subject: str | None = None


@dataclass
class Thread:
    thread_id: str
    identity: str
    profile_url: str
    created_at: datetime
    messages: list[Message] = field(default_factory=list)
    inmail: bool = False

    @property
    def last_message(self) -> Message:
        return self.messages[-1]

    @property
    def last_activity_at(self) -> datetime:
        return self.messages[-1].created_at if self.messages else self.created_at

    @property
    def first_sender_is_us(self) -> bool:
        return self.messages[0].from_us

    @property
    def unread_count(self) -> int:
        n = 0
        for m in reversed(self.messages):
            if m.from_us:
                break
            n += 1
        return n

    @property
    def thread_url(self) -> str:
        return f"https://www.linkedin.com/messaging/thread/{self.thread_id}/"


@dataclass(frozen=True)
class Delivery:
    """One real effect on LinkedIn: what tests assert against."""

    identity: str
    profile_url: str
    kind: str  # visit | invite | withdraw | message | inmail | follow
    at: datetime
    text: str | None = None


@dataclass(order=True)
class Event:
    """A scheduled effect, applied lazily once ``at <= clock.now()``."""

    at: datetime
    seq: int
    kind: str = field(compare=False)  # accept | reply | writes_first | auth
    identity: str = field(compare=False)
    profile_url: str = field(compare=False, default="")
    data: dict[str, Any] = field(compare=False, default_factory=dict)


@dataclass(frozen=True)
class FaultPlan:
    kind: str  # 429 | 5xx | timeout
    after: bool = False  # timeout only: the action was performed before the call "timed out"


# ------------------------------------------------------------------------------ url helpers

_HANDLE_RE = re.compile(r"^[A-Za-z0-9%_.\-~]+$")


def normalize_url(url: str) -> str:
    """``https://www.linkedin.com/in/<handle>`` for /in/, /pub/, /sales/people|lead/ URLs.

    Case, scheme, host variant, trailing slash, query and fragment are ignored. Raises
    ``WorldError("INVALID_INPUT")`` for anything that is not a LinkedIn profile URL.

    >>> normalize_url("http://linkedin.com/in/Ada-Lovelace/?utm=x")
    'https://www.linkedin.com/in/ada-lovelace'
    """
    raw = (url or "").strip()
    if "://" not in raw and raw.lower().startswith(("linkedin.com", "www.linkedin.com")):
        raw = "https://" + raw
    parts = urlsplit(raw)
    host = (parts.hostname or "").lower()
    if parts.scheme.lower() not in ("http", "https") or not (
        host == "linkedin.com" or host.endswith(".linkedin.com")
    ):
        raise WorldError("INVALID_INPUT", f"not a LinkedIn profile URL: {url!r}")
    segs = [s for s in unquote(parts.path).split("/") if s]
    handle: str | None = None
    if len(segs) >= 2 and segs[0].lower() in ("in", "pub"):
        handle = segs[1]
    elif len(segs) >= 3 and segs[0].lower() == "sales" and segs[1].lower() in ("people", "lead"):
        handle = segs[2].split(",")[0]
    if not handle or not _HANDLE_RE.match(handle):
        raise WorldError("INVALID_INPUT", f"not a LinkedIn profile URL: {url!r}")
    return f"https://www.linkedin.com/in/{handle.lower()}"


def _digest(*key: object) -> bytes:
    return hashlib.sha256("\x1f".join(map(str, key)).encode()).digest()


def week_start(at: datetime) -> datetime:
    """Monday 00:00 UTC of the calendar week of ``at`` (when weekly caps reset)."""
    day = at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_dt(text: str) -> datetime:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


# ------------------------------------------------------------------------------------ world


class World:
    """The simulated LinkedIn shared by the Edges, LinkedAPI and ConnectSafely sandbox APIs."""

    def __init__(self, clock: Clock, seed: int = 0, config: WorldConfig | None = None) -> None:
        self.clock = clock
        self.seed = seed
        self.config = config or WorldConfig()
        self.started_at = clock.now()
        self.identities: dict[str, IdentityState] = {}
        self._alias: dict[str, str] = {}
        self.profiles: dict[str, Profile] = {}
        self._by_profile_id: dict[int, str] = {}
        #: identity uid -> profile url -> connected_at
        self.network: dict[str, dict[str, datetime]] = {}
        self.invitations: dict[str, dict[str, Invitation]] = {}
        self.threads: dict[str, dict[str, Thread]] = {}
        self._thread_index: dict[str, tuple[str, str]] = {}
        self._events: list[Event] = []
        self._seq = 0
        self._ids = 0
        self._action_times: dict[tuple[str, str], deque[datetime]] = {}
        # weekly caps: (identity, action) -> [Monday of the week counted, actions that week]
        self._week_counts: dict[tuple[str, str], list[Any]] = {}
        self._holds: dict[tuple[str, str], datetime] = {}  # (identity, action) -> hold ends
        self.delivered: list[Delivery] = []
        self.integration_events: list[dict[str, Any]] = []
        self._auth_reported: dict[str, bool] = {}
        self._fault_counts: dict[str, int] = {}
        self.faults_injected: dict[str, int] = {"429": 0, "5xx": 0, "timeout": 0}
        self.call_count = 0
        self._pending_replies: set[tuple[str, str]] = set()
        self._invite_counts: dict[tuple[str, str], int] = {}
        self._by_sn: dict[str, Profile] = {}
        self.follows: dict[str, list[str]] = {}  # identity uid -> followed profile urls
        self._thread_versions: dict[str, int] = {}  # bumped on every message: sort cache key
        self._sorted_threads: dict[str, tuple[int, list[Thread]]] = {}
        #: JSON-ready state of each provider API (runs, schedules, workflows...), persisted
        #: with the world; each API owns its key ("edges", "linkedapi", "connectsafely")
        self.api_state: dict[str, Any] = {}

    # ----------------------------------------------------------------------------- random

    def _uniform(self, *key: object) -> float:
        """One seeded draw in [0, 1) keyed like :meth:`_rng`, without building a Random."""
        return int.from_bytes(_digest(self.seed, *key)[:7], "big") / float(1 << 56)

    def _rng(self, *key: object) -> random.Random:
        return random.Random(int.from_bytes(_digest(self.seed, *key)[:8], "big"))

    def _next_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}-{self._ids:08d}"

    def _schedule(self, at: datetime, kind: str, identity: str, url: str = "",
                  **data: Any) -> None:
        self._seq += 1
        heapq.heappush(self._events, Event(at, self._seq, kind, identity, url, data))

    @property
    def now(self) -> datetime:
        return self.clock.now()

    # ------------------------------------------------------------------------- identities

    def add_identity(
        self,
        uid: str,
        *,
        profile_id: int | None = None,
        name: str | None = None,
        kind: str = "classic",
        type: str = "engagement",  # the Edges field name
        aliases: Iterable[str] = (),
        provider: str | None = None,
        limits: Mapping[str, int] | None = None,
        handle: str | None = None,
        weekly_limits: Mapping[str, int] | None = None,
    ) -> IdentityState:
        """Add a LinkedIn account. ``aliases`` (e.g. a LinkedAPI identification token or a
        ConnectSafely account id) resolve to it in :meth:`identity`."""
        self._advance()
        if kind not in DEFAULT_LIMITS:
            raise ValueError(f"identity kind must be classic or sales_navigator, not {kind!r}")
        if type not in ("engagement", "standard"):
            raise ValueError(f"identity type must be engagement or standard, not {type!r}")
        if uid in self.identities or uid in self._alias:
            raise ValueError(f"identity {uid!r} exists")
        pid = profile_id if profile_id is not None else self._profile_id_for(f"identity:{uid}")
        slug = handle or re.sub(r"[^a-z0-9-]+", "-", uid.lower()).strip("-") or "me"
        ident = IdentityState(
            uid=uid, profile_id=pid, profile_url=f"https://www.linkedin.com/in/{slug}",
            name=name or uid, kind=kind, type=type, aliases=tuple(aliases), provider=provider,
            limits=dict(limits or {}), weekly_limits=dict(weekly_limits or {}),
            created_at=self.now,
        )
        self.identities[uid] = ident
        for alias in ident.aliases:
            self._alias[alias] = uid
        self._by_profile_id[pid] = ident.profile_url
        self.network.setdefault(uid, {})
        self.invitations.setdefault(uid, {})
        self.threads.setdefault(uid, {})
        self._auth_reported[uid] = True
        faults = self.config.faults
        if uid in faults.auth_expire_at:
            self._set_auth_at(ident, faults.auth_expire_at[uid], False)
        if uid in faults.reauth_at:
            self._set_auth_at(ident, faults.reauth_at[uid], True)
        for profile in self.profiles.values():
            self._seed_pair(ident, profile)
        return ident

    def identity(self, uid_or_alias: str) -> IdentityState:
        """The identity by uid or alias; ``KeyError`` when unknown."""
        uid = self._alias.get(uid_or_alias, uid_or_alias)
        return self.identities[uid]

    def find_identity(self, uid_or_alias: str) -> IdentityState | None:
        uid = self._alias.get(uid_or_alias, uid_or_alias)
        return self.identities.get(uid)

    def _set_auth_at(self, ident: IdentityState, at: datetime, ok: bool) -> None:
        ident.auth_history.append((at, ok))
        ident.auth_history.sort(key=lambda item: item[0])
        self._schedule(at, "auth", ident.uid, ok=ok)

    def set_auth(self, identity: str, ok: bool, at: datetime | None = None) -> None:
        """Expire (``ok=False``) or re-authenticate an identity, now or at a future time."""
        ident = self.identity(identity)
        self._set_auth_at(ident, at or self.now, ok)
        self._advance()

    def auth_ok(self, identity: str) -> bool:
        self._advance()
        return self.identity(identity).auth_ok(self.now)

    # --------------------------------------------------------------------------- profiles

    def _profile_id_for(self, key: str) -> int:
        pid = 100_000_000 + int.from_bytes(_digest(self.seed, "pid", key)[:4], "big") % 900_000_000
        while pid in self._by_profile_id:
            pid += 1
        return pid

    def add_profile(
        self,
        url: str,
        *,
        first_name: str | None = None,
        full_name: str | None = None,
        company: str | None = None,
        job_title: str | None = None,
        location: str | None = None,
        accessible: bool = True,
        already_connected_with: Iterable[str] | None = (),
        writes_first_to: Iterable[str] | None = (),
        accepts: bool | None = None,
        replies: bool | None = None,
        generated: bool = False,
    ) -> Profile:
        """Add (or update) a profile. ``already_connected_with``/``writes_first_to`` list identity
        uids; ``None`` draws them from the configured fractions. ``accepts``/``replies`` ``None``
        draw from the probabilities (per identity, per message)."""
        self._advance()
        norm = normalize_url(url)
        handle = norm.rsplit("/", 1)[-1]
        bits = _digest(self.seed, "profile", norm)

        def pick(i: int, options: tuple[str, ...]) -> str:
            return options[int.from_bytes(bits[2 * i:2 * i + 2], "big") % len(options)]

        words = [w for w in re.split(r"[-_.]+", handle) if w.isalpha()]
        guess_first = words[0].capitalize() if words else pick(0, _FIRST)
        guess_last = words[1].capitalize() if len(words) > 1 else pick(1, _LAST)
        first = first_name or (full_name.split()[0] if full_name else guess_first)
        full = full_name or f"{first if first_name else guess_first} {guess_last}"
        last = full.split(" ", 1)[1] if " " in full else ""
        comp = company if company is not None else pick(2, _COMPANIES)
        title = job_title if job_title is not None else pick(3, _TITLES)
        existing = self.profiles.get(norm)
        pid = existing.profile_id if existing else self._profile_id_for(norm)
        sn = "ACwAA" + base64.b32encode(_digest(self.seed, "sn", norm)[:15]).decode()[:23]
        profile = Profile(
            url=norm, handle=handle, profile_id=pid, sales_navigator_profile_id=sn,
            first_name=first, last_name=last, full_name=full, company=comp, job_title=title,
            headline=f"{title} at {comp}" if comp else title,
            location=location if location is not None else pick(4, _CITIES),
            accessible=accessible, accepts=accepts, replies=replies,
            already_connected_with=None if already_connected_with is None
            else tuple(already_connected_with),
            writes_first_to=None if writes_first_to is None else tuple(writes_first_to),
            generated=generated,
        )
        self.profiles[norm] = profile
        self._by_profile_id[pid] = norm
        self._by_sn[sn.lower()] = profile
        if existing is None:
            for ident in self.identities.values():
                self._seed_pair(ident, profile)
        return profile

    def _generated_profile(self, url: str) -> Profile:
        norm = normalize_url(url)
        return self.add_profile(
            norm, accessible=self._uniform("traits", norm) >= self.config.inaccessible_fraction,
            already_connected_with=None, writes_first_to=None, generated=True,
        )

    def populate(self, n: int, *, prefix: str = "lead") -> list[Profile]:
        """Add ``n`` generated profiles with drawn traits (names, fractions of edge cases)."""
        out = []
        for i in range(n):
            rng = self._rng("populate", prefix, i)
            first, last = rng.choice(_FIRST), rng.choice(_LAST)
            url = f"https://www.linkedin.com/in/{first.lower()}-{last.lower()}-{prefix}{i:05d}"
            if url in self.profiles:
                continue
            out.append(self._generated_profile(url))
        return out

    def populate_from_csv(self, path: str | Path) -> list[Profile]:
        """Profiles for each row of a leads CSV (``linkedin_profile_url``, ``full_name``,
        ``first_name``, ``company_name``); traits drawn as for generated profiles."""
        out = []
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                url = (row.get("linkedin_profile_url") or row.get("profile_url") or "").strip()
                try:
                    norm = normalize_url(url)
                except WorldError:
                    continue
                accessible = self._uniform("traits", norm) >= self.config.inaccessible_fraction
                out.append(self.add_profile(
                    norm, first_name=row.get("first_name") or None,
                    full_name=row.get("full_name") or None,
                    company=row.get("company_name") or row.get("company") or None,
                    accessible=accessible,
                    already_connected_with=None, writes_first_to=None, generated=True,
                ))
        return out

    def profile(self, url: str) -> Profile:
        """The profile at ``url`` (auto-created when the config allows), accessible or not."""
        self._advance()
        return self._profile(url, check_access=False)

    def profile_by_id(self, profile_id: int | str) -> Profile | None:
        """Lookup by numeric LinkedIn id, Sales Navigator id or handle."""
        try:
            url = self._by_profile_id.get(int(profile_id))
        except (TypeError, ValueError):
            url = None
            text = str(profile_id).strip().lower()
            if text in self._by_sn:
                return self._by_sn[text]
            return self.profiles.get(f"https://www.linkedin.com/in/{text}")
        return self.profiles.get(url) if url else None

    def _profile(self, url: str, *, check_access: bool = True) -> Profile:
        norm = normalize_url(url)
        profile = self.profiles.get(norm)
        if profile is None and "/sales/" in url.lower():
            profile = self._by_sn.get(norm.rsplit("/", 1)[-1])
        if profile is None:
            if not self.config.auto_create_profiles:
                raise WorldError("PROFILE_NOT_ACCESSIBLE", f"profile not found: {norm}")
            profile = self._generated_profile(norm)
        if check_access and not profile.accessible:
            raise WorldError("PROFILE_NOT_ACCESSIBLE",
                             f"profile deleted, blocked or moved: {norm}")
        return profile

    def _already_connected(self, ident: IdentityState, profile: Profile) -> bool:
        if profile.already_connected_with is not None:
            return ident.uid in profile.already_connected_with
        return self._uniform("connected", ident.uid, profile.url) < (
            self.config.already_connected_fraction)

    def _writes_first(self, ident: IdentityState, profile: Profile) -> bool:
        if profile.writes_first_to is not None:
            return ident.uid in profile.writes_first_to
        return self._uniform("writes_first", ident.uid, profile.url) < (
            self.config.writes_first_fraction)

    def _seed_pair(self, ident: IdentityState, profile: Profile) -> None:
        """Materialize the pre-existing relationship of one (identity, profile) pair."""
        if not profile.accessible:
            return
        if self._already_connected(ident, profile):
            days = 1 + 699 * self._uniform("connected_at", ident.uid, profile.url)
            self.network[ident.uid][profile.url] = self.started_at - timedelta(days=days)
        if self._writes_first(ident, profile):
            rng = self._rng("writes_first_at", ident.uid, profile.url)
            lo, hi = self.config.writes_first_delay_hours
            at = self.started_at + timedelta(hours=rng.uniform(lo, hi))
            self._schedule(at, "writes_first", ident.uid, profile.url,
                           text=rng.choice(_OPENERS))

    # ------------------------------------------------------------------------------- time

    def advance(self) -> None:
        """Apply every scheduled effect due by now (every public method does this first)."""
        self._advance()

    def _advance(self) -> None:
        """Apply every scheduled effect whose time has come, in time order."""
        now = self.clock.now()
        events = self._events
        while events and events[0].at <= now:
            ev = heapq.heappop(events)
            getattr(self, f"_apply_{ev.kind}")(ev)

    def _apply_accept(self, ev: Event) -> None:
        inv = self.invitations.get(ev.identity, {}).get(ev.profile_url)
        if inv is None or inv.invitation_id != ev.data.get("invitation_id"):
            return  # withdrawn meanwhile
        del self.invitations[ev.identity][ev.profile_url]
        self.network[ev.identity][ev.profile_url] = ev.at

    def _apply_reply(self, ev: Event) -> None:
        thread = self.threads.get(ev.identity, {}).get(ev.profile_url)
        if thread is None:
            return
        self._pending_replies.discard((ev.identity, ev.profile_url))
        profile = self.profiles[ev.profile_url]
        self._append(thread, from_us=False, sender=profile.profile_id, text=ev.data["text"],
                     at=ev.at)

    def _apply_writes_first(self, ev: Event) -> None:
        profile = self.profiles[ev.profile_url]
        thread = self._thread(ev.identity, ev.profile_url, ev.at)
        self._append(thread, from_us=False, sender=profile.profile_id, text=ev.data["text"],
                     at=ev.at)

    def _apply_auth(self, ev: Event) -> None:
        ident = self.identities.get(ev.identity)
        if ident is None:
            return
        ok = ident.auth_ok(ev.at)
        if ok != self._auth_reported.get(ident.uid, True):
            self._auth_reported[ident.uid] = ok
            self.integration_events.append({
                "event": "AUTH_SUCCESS" if ok else "AUTH_EXPIRED",
                "identity_uid": ident.uid,
                "integration": "linkedin",
                "at": _iso(ev.at),
            })

    # ------------------------------------------------------------------------ conversations

    def _thread(self, identity: str, url: str, at: datetime) -> Thread:
        threads = self.threads.setdefault(identity, {})
        thread = threads.get(url)
        if thread is None:
            raw = _digest(self.seed, "thread", identity, url)[:18]
            tid = "2-" + base64.b64encode(raw).decode().replace("/", "_").replace("+", "-")
            thread = Thread(thread_id=tid, identity=identity, profile_url=url, created_at=at)
            threads[url] = thread
            self._thread_index[tid] = (identity, url)
        return thread

    def _append(self, thread: Thread, *, from_us: bool, sender: int, text: str, at: datetime,
                subject: str | None = None) -> Message:
        msg = Message(message_id=self._next_id("msg"), thread_id=thread.thread_id,
                      sender_profile_id=sender, from_us=from_us, text=text, created_at=at,
                      subject=subject)
        thread.messages.append(msg)
        self._thread_versions[thread.identity] = self._thread_versions.get(thread.identity, 0) + 1
        return msg

    def _maybe_schedule_reply(self, ident: IdentityState, profile: Profile, thread: Thread) -> None:
        if (ident.uid, profile.url) in self._pending_replies:
            return
        ours = sum(1 for m in thread.messages if m.from_us)
        rng = self._rng("reply", ident.uid, profile.url, ours)
        replies = profile.replies if profile.replies is not None else (
            rng.random() < self.config.reply_probability)
        if not replies:
            return
        lo, hi = self.config.reply_delay_hours
        at = self.now + timedelta(hours=rng.uniform(lo, hi))
        self._pending_replies.add((ident.uid, profile.url))
        self._schedule(at, "reply", ident.uid, profile.url, text=rng.choice(_REPLIES))

    # ---------------------------------------------------------------------------- actions

    def _check(self, identity: str, url: str | None, action: str | None) -> tuple[
            IdentityState, Profile | None]:
        """auth -> profile access -> smart limit, in that order (as LinkedIn fails them)."""
        self._advance()
        self.call_count += 1
        ident = self.find_identity(identity)
        if ident is None:
            raise WorldError("NO_VALID_ACCOUNT_CONFIGURED", f"unknown identity {identity!r}")
        if not ident.auth_ok(self.now):
            raise WorldError("AUTH_EXPIRED", "the identity's LinkedIn session expired",
                             {"identity_uid": ident.uid})
        profile = self._profile(url) if url is not None else None
        if action is not None:
            self._check_limit(ident, action)
        return ident, profile

    def limit_for(self, identity: str, action: str) -> int | None:
        ident = self.identity(identity)
        if action in ident.limits:
            return ident.limits[action]
        return self.config.limit(ident.kind, action)

    def _window(self, uid: str, action: str) -> deque[datetime]:
        times = self._action_times.setdefault((uid, action), deque())
        cutoff = self.now - DAY
        while times and times[0] <= cutoff:
            times.popleft()
        return times

    def _check_limit(self, ident: IdentityState, action: str) -> None:
        limit = self.limit_for(ident.uid, action)
        if limit is not None:
            times = self._window(ident.uid, action)
            if len(times) >= limit:
                until = times[0] + DAY if times else self.now + DAY
                raise WorldError(
                    "LIMIT_REACHED", f"smart limit of {limit} {action} per 24 h reached",
                    {"postponed_until": _iso(until), "appendix": f"rolling 24h window, {action}",
                     "limit": limit, "action": action},
                )
        cap = ident.weekly_limits.get(action)
        if cap is None:
            return
        hold = self._holds.get((ident.uid, action))
        if hold is None or hold <= self.now:
            if self._week_count(ident.uid, action) < cap:
                return
            hold = self._holds[(ident.uid, action)] = self.now + DAY  # going over: a hold
        raise WorldError(
            "LIMIT_REACHED", f"weekly cap of {cap} {action} reached: the account is on hold",
            {"postponed_until": _iso(hold), "limit": cap, "action": action,
             "appendix": f"calendar week from Monday 00:00 UTC, {action}; 24 h hold"},
        )

    def _week_count(self, uid: str, action: str) -> int:
        counted = self._week_counts.get((uid, action))
        if counted is None or counted[0] != week_start(self.now):
            return 0
        return int(counted[1])

    def usage(self, identity: str, action: str) -> int:
        """Actions of this kind in the rolling 24 h window."""
        self._advance()
        return len(self._window(self.identity(identity).uid, action))

    def _deliver(self, ident: IdentityState, profile: Profile, kind: str,
                 action: str | None, text: str | None = None) -> Delivery:
        d = Delivery(ident.uid, profile.url, kind, self.now, text)
        self.delivered.append(d)
        if action is not None:
            self._action_times.setdefault((ident.uid, action), deque()).append(self.now)
            if action in ident.weekly_limits:
                self._week_counts[(ident.uid, action)] = [
                    week_start(self.now), self._week_count(ident.uid, action) + 1]
        return d

    def visit(self, identity: str, url: str) -> Profile:
        """View a profile; returns it."""
        ident, profile = self._check(identity, url, "visit")
        assert profile is not None
        self._deliver(ident, profile, "visit", "visit")
        return profile

    def relationship(self, identity: str, url: str) -> str:
        """``connected`` | ``pending`` | ``none``."""
        ident, profile = self._check(identity, url, None)
        assert profile is not None
        if profile.url in self.network[ident.uid]:
            return "connected"
        if profile.url in self.invitations[ident.uid]:
            return "pending"
        return "none"

    def connect(self, identity: str, url: str, note: str | None = None) -> Invitation:
        """Send an invitation: ALREADY_CONNECTED, INVITATION_PENDING, or a pending invitation
        that the lead accepts (or not) after a seeded delay."""
        if note is not None and len(note) > MAX_NOTE:
            raise WorldError("NOTE_TOO_LONG", f"note longer than {MAX_NOTE} characters",
                             {"max_length": MAX_NOTE, "length": len(note)})
        ident, profile = self._check(identity, url, None)
        assert profile is not None
        if profile.url in self.network[ident.uid]:
            raise WorldError("ALREADY_CONNECTED", "already a 1st degree connection")
        if profile.url in self.invitations[ident.uid]:
            raise WorldError("INVITATION_PENDING", "an invitation is already pending")
        self._check_limit(ident, "connect")
        inv = Invitation(self._next_id("inv"), ident.uid, profile.url, self.now, note or None)
        self.invitations[ident.uid][profile.url] = inv
        self._deliver(ident, profile, "invite", "connect", note or None)
        sent = self._invite_counts.get((ident.uid, profile.url), 0) + 1
        self._invite_counts[(ident.uid, profile.url)] = sent
        rng = self._rng("accept", ident.uid, profile.url, sent)
        accepts = profile.accepts if profile.accepts is not None else (
            rng.random() < self.config.accept_probability)
        lo, hi = self.config.accept_delay_hours
        delay = timedelta(hours=rng.uniform(lo, hi))
        if accepts:
            self._schedule(self.now + delay, "accept", ident.uid, profile.url,
                           invitation_id=inv.invitation_id)
        return inv

    def follow(self, identity: str, url: str) -> Profile:
        """Follow a profile (idempotent: following twice delivers once)."""
        ident, profile = self._check(identity, url, None)
        assert profile is not None
        follows = self.follows.setdefault(ident.uid, [])
        if profile.url not in follows:
            follows.append(profile.url)
            self._deliver(ident, profile, "follow", None)
        return profile

    def following(self, identity: str, url: str) -> bool:
        uid = self.identity(identity).uid
        return normalize_url(url) in self.follows.get(uid, [])

    def withdraw(self, identity: str, url: str) -> Invitation:
        """Withdraw a pending invitation (``NOT_PENDING`` when there is none)."""
        ident, profile = self._check(identity, url, None)
        assert profile is not None
        inv = self.invitations[ident.uid].pop(profile.url, None)
        if inv is None:
            if profile.url in self.network[ident.uid]:
                raise WorldError("ALREADY_CONNECTED", "the invitation was already accepted")
            raise WorldError("NOT_PENDING", "no pending invitation to withdraw")
        self._deliver(ident, profile, "withdraw", None)
        return inv

    def message(self, identity: str, url: str, text: str) -> Thread:
        """Send a message: needs a connection or an existing conversation (else NOT_CONNECTED).
        Returns the thread (``thread.thread_id``)."""
        if not text:
            raise WorldError("INVALID_INPUT", "empty message")
        if len(text) > MAX_MESSAGE:
            raise WorldError("INVALID_INPUT", f"message longer than {MAX_MESSAGE} characters")
        ident, profile = self._check(identity, url, None)
        assert profile is not None
        existing = self.threads[ident.uid].get(profile.url)
        if profile.url not in self.network[ident.uid] and existing is None:
            raise WorldError("NOT_CONNECTED", "you can only message 1st degree connections")
        self._check_limit(ident, "message")
        thread = self._thread(ident.uid, profile.url, self.now)
        self._append(thread, from_us=True, sender=ident.profile_id, text=text, at=self.now)
        self._deliver(ident, profile, "message", "message", text)
        self._maybe_schedule_reply(ident, profile, thread)
        return thread

    def inmail(self, identity: str, url: str, subject: str, text: str) -> Thread:
        """Send an InMail (no connection needed; Sales Navigator subscription needed)."""
        if not text:
            raise WorldError("INVALID_INPUT", "empty message")
        ident, profile = self._check(identity, url, None)
        assert profile is not None
        if ident.kind != "sales_navigator":
            raise WorldError("SN_ACCOUNT_UPGRADE", "InMail needs a Sales Navigator subscription")
        self._check_limit(ident, "inmail")
        thread = self._thread(ident.uid, profile.url, self.now)
        thread.inmail = thread.inmail or not thread.messages
        self._append(thread, from_us=True, sender=ident.profile_id, text=text, at=self.now,
                     subject=subject or None)
        self._deliver(ident, profile, "inmail", "inmail", text)
        self._maybe_schedule_reply(ident, profile, thread)
        return thread

    def search_people(self, query: str = "", limit: int = 25,
                      identity: str | None = None) -> list[Profile]:
        """Accessible profiles whose name, company or headline contains every query word."""
        if identity is not None:
            self._check(identity, None, "search")
            ident = self.identity(identity)
            self._action_times.setdefault((ident.uid, "search"), deque()).append(self.now)
        else:
            self._advance()
        words = query.lower().split()
        out = []
        for p in sorted(self.profiles.values(), key=lambda p: p.url):
            if not p.accessible:
                continue
            hay = f"{p.full_name} {p.company} {p.headline} {p.location}".lower()
            if all(w in hay for w in words):
                out.append(p)
                if len(out) >= limit:
                    break
        return out

    # ------------------------------------------------------------------------------ reads

    def me(self, identity: str) -> IdentityState:
        ident, _ = self._check(identity, None, None)
        return ident

    def connections_of(self, identity: str) -> list[tuple[Profile, datetime]]:
        """Connections, most recent first."""
        ident, _ = self._check(identity, None, None)
        items = [(self.profiles[u], at) for u, at in self.network[ident.uid].items()]
        items.sort(key=lambda it: (it[1], it[0].url), reverse=True)
        return items

    def connections(self, identity: str) -> list[tuple[Profile, datetime]]:
        """Alias of :meth:`connections_of`: ``[(profile, connected_at)]``, newest first."""
        return self.connections_of(identity)

    def pending_invitations(self, identity: str) -> list[Invitation]:
        """Sent invitations still pending, most recent first."""
        ident, _ = self._check(identity, None, None)
        invs = list(self.invitations[ident.uid].values())
        invs.sort(key=lambda i: (i.sent_at, i.profile_url), reverse=True)
        return invs

    def conversations(self, identity: str) -> list[Thread]:
        """Threads, most recent activity first."""
        ident, _ = self._check(identity, None, None)
        version = self._thread_versions.get(ident.uid, 0)
        cached = self._sorted_threads.get(ident.uid)
        if cached is not None and cached[0] == version:
            return list(cached[1])
        threads = [t for t in self.threads[ident.uid].values() if t.messages]
        threads.sort(key=lambda t: (t.last_activity_at, t.thread_id), reverse=True)
        self._sorted_threads[ident.uid] = (version, threads)
        return list(threads)

    def thread(self, identity: str, thread_id: str) -> Thread:
        """One thread by id (or by thread URL); ``WorldError("INVALID_INPUT")`` when unknown."""
        ident, _ = self._check(identity, None, None)
        tid = thread_id.rstrip("/").rsplit("/", 1)[-1]
        where = self._thread_index.get(tid)
        if where is None or where[0] != ident.uid:
            raise WorldError("INVALID_INPUT", f"unknown conversation {thread_id!r}")
        return self.threads[where[0]][where[1]]

    def thread_with(self, identity: str, url: str) -> Thread | None:
        """The conversation with a profile, if any."""
        ident, profile = self._check(identity, url, None)
        assert profile is not None
        return self.threads[ident.uid].get(profile.url)

    def messages(self, identity: str, thread_id: str,
                 since: datetime | None = None) -> list[Message]:
        """Messages of a thread, oldest first, optionally only those after ``since``."""
        thread = self.thread(identity, thread_id)
        return [m for m in thread.messages if since is None or m.created_at > since]

    def sender_url(self, message: Message) -> str:
        return self._by_profile_id.get(message.sender_profile_id, "")

    # ----------------------------------------------------------------------------- faults

    def fault_plan(self, api: str, op: str) -> FaultPlan | None:
        """A seeded draw per (api, op, call number): None, 429, 5xx or timeout (before or after
        the action; the API layer performs the action first when ``after``)."""
        f = self.config.faults
        if not (f.rate_429 or f.rate_5xx or f.rate_timeout):
            return None
        key = f"{api}:{op}"
        n = self._fault_counts.get(key, 0)
        self._fault_counts[key] = n + 1
        rng = self._rng("fault", api, op, n)
        x = rng.random()
        plan: FaultPlan | None = None
        if x < f.rate_429:
            plan = FaultPlan("429")
        elif x < f.rate_429 + f.rate_5xx:
            plan = FaultPlan("5xx")
        elif x < f.rate_429 + f.rate_5xx + f.rate_timeout:
            plan = FaultPlan("timeout", after=rng.random() < 0.5)
        if plan is not None:
            self.faults_injected[plan.kind] += 1
        return plan

    def maybe_fault(self, api: str, op: str) -> str | None:
        """``None`` or ``"429"``/``"5xx"``/``"timeout"`` (see :meth:`fault_plan`)."""
        plan = self.fault_plan(api, op)
        return plan.kind if plan else None

    # ------------------------------------------------------------------------ ground truth

    def messages_to(self, identity: str, url: str) -> list[Delivery]:
        uid = self.identity(identity).uid
        norm = normalize_url(url)
        return [d for d in self.delivered
                if d.identity == uid and d.profile_url == norm and d.kind in ("message", "inmail")]

    def count(self, identity: str | None = None, kind: str | None = None,
              since: datetime | None = None) -> int:
        uid = self.identity(identity).uid if identity else None
        return sum(1 for d in self.delivered
                   if (uid is None or d.identity == uid) and (kind is None or d.kind == kind)
                   and (since is None or d.at >= since))

    def deliveries(self, identity: str | None = None, url: str | None = None,
                   kind: str | None = None) -> list[Delivery]:
        uid = self.identity(identity).uid if identity else None
        norm = normalize_url(url) if url else None
        return [d for d in self.delivered
                if (uid is None or d.identity == uid) and (norm is None or d.profile_url == norm)
                and (kind is None or d.kind == kind)]

    def duplicates(self, kind: str = "message") -> list[tuple[str, str, str, int]]:
        """(identity, profile, text, count) for every text delivered more than once."""
        seen: dict[tuple[str, str, str], int] = {}
        for d in self.delivered:
            if d.kind == kind:
                k = (d.identity, d.profile_url, d.text or "")
                seen[k] = seen.get(k, 0) + 1
        return [(*k, n) for k, n in sorted(seen.items()) if n > 1]

    def inspect(self) -> dict[str, Any]:
        """A JSON-ready summary of the world (what tests and the inspection API report)."""
        self._advance()
        per: dict[str, dict[str, int]] = {}
        for d in self.delivered:
            c = per.setdefault(d.identity, {})
            c[d.kind] = c.get(d.kind, 0) + 1
        return {
            "now": _iso(self.now),
            "seed": self.seed,
            "identities": {
                uid: {
                    "auth_ok": i.auth_ok(self.now), "kind": i.kind, "type": i.type,
                    "connections": len(self.network[uid]),
                    "pending_invitations": len(self.invitations[uid]),
                    "conversations": sum(1 for t in self.threads[uid].values() if t.messages),
                    "delivered": per.get(uid, {}),
                    "usage_24h": {a: len(self._window(uid, a))
                                  for (u, a) in list(self._action_times) if u == uid},
                    "usage_week": {
                        a: {"cap": cap, "used": self._week_count(uid, a),
                            "hold_until": _iso(h) if (h := self._holds.get((uid, a)))
                            and h > self.now else None}
                        for a, cap in i.weekly_limits.items()},
                }
                for uid, i in self.identities.items()
            },
            "profiles": len(self.profiles),
            "delivered": len(self.delivered),
            "pending_events": len(self._events),
            "faults_injected": dict(self.faults_injected),
            "integration_events": len(self.integration_events),
            "calls": self.call_count,
        }

    # ------------------------------------------------------------------------ persistence

    def to_json(self) -> dict[str, Any]:
        """Everything needed to rebuild this world (the clock is saved by its owner)."""
        def dt(x: datetime) -> str:
            return _iso(x)

        cfg = asdict(self.config)
        cfg["faults"]["auth_expire_at"] = {k: dt(v) for k, v in
                                           self.config.faults.auth_expire_at.items()}
        cfg["faults"]["reauth_at"] = {k: dt(v) for k, v in self.config.faults.reauth_at.items()}
        return {
            "version": 1,
            "seed": self.seed,
            "started_at": dt(self.started_at),
            "config": cfg,
            "identities": [
                {**{f.name: getattr(i, f.name) for f in fields(i)
                    if f.name not in ("auth_history", "created_at", "aliases")},
                 "aliases": list(i.aliases),
                 "created_at": dt(i.created_at) if i.created_at else None,
                 "auth_history": [[dt(a), ok] for a, ok in i.auth_history]}
                for i in self.identities.values()
            ],
            "profiles": [
                {**asdict(p),
                 "already_connected_with": None if p.already_connected_with is None
                 else list(p.already_connected_with),
                 "writes_first_to": None if p.writes_first_to is None else list(p.writes_first_to)}
                for p in self.profiles.values()
            ],
            "connections": {u: {url: dt(a) for url, a in c.items()}
                            for u, c in self.network.items()},
            "invitations": [
                {**asdict(inv), "sent_at": dt(inv.sent_at)}
                for invs in self.invitations.values() for inv in invs.values()
            ],
            "threads": [
                {"thread_id": t.thread_id, "identity": t.identity, "profile_url": t.profile_url,
                 "created_at": dt(t.created_at), "inmail": t.inmail,
                 "messages": [{**asdict(m), "created_at": dt(m.created_at)} for m in t.messages]}
                for ts in self.threads.values() for t in ts.values()
            ],
            "events": [
                {"at": dt(e.at), "seq": e.seq, "kind": e.kind, "identity": e.identity,
                 "profile_url": e.profile_url, "data": e.data}
                for e in sorted(self._events)
            ],
            "seq": self._seq,
            "ids": self._ids,
            "action_times": [[u, a, [dt(t) for t in ts]]
                             for (u, a), ts in self._action_times.items()],
            "week_counts": [[u, a, dt(week), n] for (u, a), (week, n) in self._week_counts.items()],
            "holds": [[u, a, dt(until)] for (u, a), until in self._holds.items()],
            "delivered": [{**asdict(d), "at": dt(d.at)} for d in self.delivered],
            "integration_events": self.integration_events,
            "auth_reported": self._auth_reported,
            "fault_counts": self._fault_counts,
            "faults_injected": self.faults_injected,
            "call_count": self.call_count,
            "api_state": self.api_state,
            "follows": self.follows,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], clock: Clock) -> World:
        """Rebuild a world saved by :meth:`to_json` on ``clock``."""
        cfg = dict(data["config"])
        fcfg = dict(cfg.pop("faults"))
        fcfg["auth_expire_at"] = {k: _parse_dt(v) for k, v in fcfg["auth_expire_at"].items()}
        fcfg["reauth_at"] = {k: _parse_dt(v) for k, v in fcfg["reauth_at"].items()}
        for key in ("accept_delay_hours", "reply_delay_hours", "writes_first_delay_hours"):
            cfg[key] = tuple(cfg[key])
        config = WorldConfig(**cfg, faults=FaultConfig(**fcfg))
        w = cls(clock, seed=int(data["seed"]), config=config)
        w.started_at = _parse_dt(data["started_at"])
        for raw in data["identities"]:
            i = dict(raw)
            ident = IdentityState(
                **{k: v for k, v in i.items()
                   if k not in ("auth_history", "created_at", "aliases")},
                aliases=tuple(i["aliases"]),
                created_at=_parse_dt(i["created_at"]) if i.get("created_at") else None,
                auth_history=[(_parse_dt(a), bool(ok)) for a, ok in i["auth_history"]],
            )
            w.identities[ident.uid] = ident
            for alias in ident.aliases:
                w._alias[alias] = ident.uid
            w._by_profile_id[ident.profile_id] = ident.profile_url
            w.network.setdefault(ident.uid, {})
            w.invitations.setdefault(ident.uid, {})
            w.threads.setdefault(ident.uid, {})
        for raw in data["profiles"]:
            p = dict(raw)
            for key in ("already_connected_with", "writes_first_to"):
                p[key] = None if p[key] is None else tuple(p[key])
            prof = Profile(**p)
            w.profiles[prof.url] = prof
            w._by_sn[prof.sales_navigator_profile_id.lower()] = prof
            w._by_profile_id[prof.profile_id] = prof.url
        for uid, conns in data["connections"].items():
            w.network.setdefault(uid, {}).update({u: _parse_dt(a) for u, a in conns.items()})
        for raw in data["invitations"]:
            inv = Invitation(**{**raw, "sent_at": _parse_dt(raw["sent_at"])})
            w.invitations.setdefault(inv.identity, {})[inv.profile_url] = inv
        for raw in data["threads"]:
            t = Thread(thread_id=raw["thread_id"], identity=raw["identity"],
                       profile_url=raw["profile_url"], created_at=_parse_dt(raw["created_at"]),
                       inmail=bool(raw.get("inmail")),
                       messages=[Message(**{**m, "created_at": _parse_dt(m["created_at"])})
                                 for m in raw["messages"]])
            w.threads.setdefault(t.identity, {})[t.profile_url] = t
            w._thread_index[t.thread_id] = (t.identity, t.profile_url)
        w._events = [Event(_parse_dt(e["at"]), e["seq"], e["kind"], e["identity"],
                           e["profile_url"], dict(e["data"])) for e in data["events"]]
        heapq.heapify(w._events)
        w._seq = int(data["seq"])
        w._ids = int(data["ids"])
        w._action_times = {(u, a): deque(_parse_dt(t) for t in ts)
                           for u, a, ts in data["action_times"]}
        w._week_counts = {(u, a): [_parse_dt(week), int(n)]
                          for u, a, week, n in data.get("week_counts", [])}
        w._holds = {(u, a): _parse_dt(until) for u, a, until in data.get("holds", [])}
        w.delivered = [Delivery(**{**d, "at": _parse_dt(d["at"])}) for d in data["delivered"]]
        w.integration_events = list(data["integration_events"])
        w._auth_reported = dict(data["auth_reported"])
        w._fault_counts = dict(data["fault_counts"])
        w.faults_injected = dict(data["faults_injected"])
        w.call_count = int(data.get("call_count", 0))
        w.api_state = dict(data.get("api_state") or {})
        w.follows = {k: list(v) for k, v in (data.get("follows") or {}).items()}
        w._pending_replies = {(e.identity, e.profile_url) for e in w._events if e.kind == "reply"}
        for d in w.delivered:
            if d.kind == "invite":
                pair = (d.identity, d.profile_url)
                w._invite_counts[pair] = w._invite_counts.get(pair, 0) + 1
        return w
