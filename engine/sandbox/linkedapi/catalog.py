"""What LinkedAPI reads beyond a person's basics (companies, experience, education, skills,
posts, comments, reactions, SSI), derived from the world: nothing here is stored.

Every value is a seeded draw keyed by the world's seed and the person's or company's URL, so the
same world answers the same data whatever the order of calls. Companies are the employers named
by the world's profiles plus the generator's list; a company's employees are the profiles that
name it. Posts an identity creates, and its reactions and comments, are kept in the LinkedAPI
state (:class:`~engine.sandbox.linkedapi.state.LinkedApiState`), not here.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from engine.sandbox.world import Profile, World, WorldError, iso, parse_iso
from engine.sandbox.world.names import CITIES, COMPANIES, TITLES
from engine.sandbox.world.state import digest

INDUSTRIES = ("Software Development", "IT Services and IT Consulting", "Financial Services",
              "Research Services", "Aviation and Aerospace", "Professional Services")
SCHOOLS = ("Harvard University", "MIT", "Stanford University", "University of Cambridge",
           "EPFL", "Sorbonne University")
SKILLS = ("Python", "Leadership", "Distributed Systems", "Sales", "Go-to-market",
          "Machine Learning", "Negotiation", "Product Management")
LANGUAGES = ("French", "German", "Spanish", "Portuguese", "Dutch")
SIZES = (("1-10", 1, 10), ("11-50", 11, 50), ("51-200", 51, 200), ("201-500", 201, 500),
         ("501-1000", 501, 1000), ("1001-5000", 1001, 5000), ("5001-10000", 5001, 10000),
         ("10001+", 10001, 10**9))
DECISION_MAKERS = ("Founder", "CEO", "CTO", "VP Engineering", "Sales Director")
COUNTRIES = {"London": "GB", "Paris": "FR", "Berlin": "DE", "New York": "US", "Chicago": "US",
             "Lisbon": "PT", "Amsterdam": "NL", "Madrid": "ES"}
YEARS_BUCKETS = (("lessThanOne", 0, 0), ("oneToTwo", 1, 2), ("threeToFive", 3, 5),
                 ("sixToTen", 6, 10), ("moreThanTen", 11, 99))
#: LinkedIn activity ids: people's posts, companies' posts and posts identities create
PERSON_POSTS, COMPANY_POSTS = 7_100_000_000_000_000_000, 7_200_000_000_000_000_000
POST_URL = "https://www.linkedin.com/feed/update/urn:li:activity:{}"
_POST_ID = re.compile(r"activity[:-](\d{19})")


def draw(world: World, *key: object) -> int:
    return int.from_bytes(digest(world.seed, "catalog", *key)[:6], "big")


def _pick(world: World, options: tuple[str, ...], *key: object) -> str:
    return options[draw(world, *key) % len(options)]


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def country(location: str) -> str:
    return COUNTRIES.get(location, "US")


@dataclass(frozen=True)
class Company:
    name: str
    slug: str
    number: int  # the numeric id in Sales Navigator's hashed URL

    @property
    def public_url(self) -> str:
        return f"https://www.linkedin.com/company/{self.slug}"

    @property
    def hashed_url(self) -> str:
        return f"https://www.linkedin.com/sales/company/{self.number}"


def company_named(world: World, name: str) -> Company:
    key = slug(name)
    return Company(name, key, 1_000_000 + draw(world, "company", key) % 9_000_000)


_TABLES: weakref.WeakKeyDictionary[World, tuple[int, list[Company], list[Profile]]] = (
    weakref.WeakKeyDictionary())


def _tables(world: World) -> tuple[int, list[Company], list[Profile]]:
    """The world's companies and its accessible profiles by URL, rebuilt when profiles are
    added (a campaign reads them per action: not a scan of every profile each time)."""
    cached = _TABLES.get(world)
    if cached is not None and cached[0] == len(world.profiles):
        return cached
    names = {p.company for p in world.profiles.values() if p.company} | set(COMPANIES)
    people = sorted((p for p in world.profiles.values() if p.accessible), key=lambda p: p.url)
    built = (len(world.profiles), [company_named(world, n) for n in sorted(names)], people)
    _TABLES[world] = built
    return built


def companies(world: World) -> list[Company]:
    """Every company of the world, by name."""
    return _tables(world)[1]


def company_at(world: World, url: str) -> Company:
    """The company a public (``/company/<slug>``) or hashed (``/sales/company/<n>``) URL
    names; ``WorldError("NO_COMPANY")`` when there is none."""
    tail = url.rstrip("/").rsplit("/", 1)[-1].lower()
    for c in companies(world):
        if tail in (c.slug, str(c.number)):
            return c
    raise WorldError("NO_COMPANY", f"not an existing LinkedIn company: {url}")


def company_of(world: World, profile: Profile) -> Company | None:
    return company_named(world, profile.company) if slug(profile.company) else None


def employees(world: World, company: Company) -> list[Profile]:
    return sorted((p for p in world.profiles.values()
                   if p.accessible and p.company and slug(p.company) == company.slug),
                  key=lambda p: p.url)


def company_data(world: World, company: Company, *, nv: bool = False) -> dict[str, Any]:
    staff = len(employees(world, company))
    count = staff * 37 + draw(world, "employees", company.slug) % 4000 + 3
    data: dict[str, Any] = {
        "name": company.name,
        "publicUrl": company.public_url,
        "description": f"{company.name} builds software for teams that ship.",
        "location": _pick(world, CITIES, "city", company.slug),
        "headquarters": country(_pick(world, CITIES, "city", company.slug)),
        "industry": industry(world, company.name),
        "website": f"https://{company.slug}.example.com",
        "employeesCount": count,
        "yearFounded": 1950 + draw(world, "founded", company.slug) % 74,
    }
    if nv:
        data["hashedUrl"] = company.hashed_url
    else:
        data["specialties"] = ", ".join(skills(world, company.slug, 3))
        data["ventureFinancing"] = draw(world, "vc", company.slug) % 2 == 0
        data["jobsCount"] = draw(world, "jobs", company.slug) % 40
    return data


def industry(world: World, company_name: str) -> str:
    return _pick(world, INDUSTRIES, "industry", slug(company_name)) if company_name else ""


def size_bucket(count: int) -> str:
    return next(name for name, lo, hi in SIZES if lo <= count <= hi)


def revenue_musd(world: World, company: Company) -> float:
    """Annual revenue in millions of USD (Sales Navigator's annualRevenue filter)."""
    return float(draw(world, "revenue", company.slug) % 2000) / 2


def skills(world: World, key: str, n: int) -> list[str]:
    start = draw(world, "skills", key)
    return [SKILLS[(start + i) % len(SKILLS)] for i in range(n)]


def previous_companies(world: World, profile: Profile) -> list[str]:
    """One or two earlier employers (never the current one)."""
    others = [c for c in COMPANIES if c != profile.company]
    n = 1 + draw(world, "prev-n", profile.url) % 2
    start = draw(world, "prev", profile.url)
    return [others[(start + i) % len(others)] for i in range(n)]


def years_of_experience(world: World, profile: Profile) -> int:
    return 1 + draw(world, "years", profile.url) % 20


def school(world: World, profile: Profile) -> str:
    return _pick(world, SCHOOLS, "school", profile.url)


def experiences(world: World, profile: Profile) -> list[dict[str, Any]]:
    now = world.started_at
    years = years_of_experience(world, profile)
    current_start = now - timedelta(days=365 * max(1, years // 3))
    out = [_experience(world, profile.job_title, profile.company, current_start, None,
                       profile.location)]
    end = current_start
    for i, name in enumerate(previous_companies(world, profile)):
        start = end - timedelta(days=365 + draw(world, "exp", profile.url, i) % 900)
        title = _pick(world, TITLES, "prev-title", profile.url, i)
        out.append(_experience(world, title, name, start, end, profile.location))
        end = start
    return out


def _experience(world: World, title: str, company: str, start: datetime, end: datetime | None,
                location: str) -> dict[str, Any]:
    months = int(((end or world.started_at) - start).days / 30.4)
    return {
        "position": title,
        "companyName": company,
        "companyHashedUrl": f"https://www.linkedin.com/company/{slug(company)}",
        "employmentType": "fullTime",
        "locationType": "hybrid",
        "description": f"{title} at {company}.",
        "duration": months,
        "startTime": iso(start),
        "endTime": iso(end) if end else None,
        "location": location,
    }


def education(world: World, profile: Profile) -> list[dict[str, Any]]:
    name = school(world, profile)
    return [{"schoolName": name,
             "schoolHashedUrl": f"https://www.linkedin.com/school/{slug(name)}",
             "details": "Master's degree, Computer Science"}]


def languages(world: World, profile: Profile) -> list[dict[str, Any]]:
    out = [{"name": "English", "proficiency": "fullProfessional"}]
    if draw(world, "lang-n", profile.url) % 2:
        out.append({"name": _pick(world, LANGUAGES, "lang", profile.url),
                    "proficiency": "professionalWorking"})
    return out


def person_posts(world: World, profile: Profile) -> list[dict[str, Any]]:
    """Zero to three posts of a profile, newest first."""
    base = PERSON_POSTS + profile.profile_id * 100
    n = draw(world, "posts-n", profile.url) % 4
    return [post_data(world, base + i, author=profile.full_name) for i in range(n)]


def company_posts(world: World, company: Company) -> list[dict[str, Any]]:
    base = COMPANY_POSTS + company.number * 100
    return [post_data(world, base + i, author=company.name) for i in range(3)]


def post_data(world: World, activity: int, *, author: str, text: str | None = None,
              at: datetime | None = None) -> dict[str, Any]:
    key = str(activity)
    when = at or world.started_at - timedelta(hours=6 + draw(world, "post-age", key) % (24 * 60))
    return {
        "url": POST_URL.format(activity),
        "time": iso(when),
        "type": "original",
        "repostText": None,
        "text": text if text is not None else f"{author}: notes on shipping, week "
        f"{draw(world, 'week', key) % 52 + 1}.",
        "images": None,
        "hasVideo": False,
        "hasPoll": False,
        "reactionsCount": len(engagers(world, key)) * 7,
        "commentsCount": len(engagers(world, key)),
        "repostsCount": draw(world, "reposts", key) % 5,
    }


def activity_of(url: str) -> int | None:
    found = _POST_ID.search(url)
    return int(found.group(1)) if found else None


def derived_post(world: World, url: str) -> dict[str, Any]:
    """A person's or company's post by URL; ``WorldError("NO_POST")`` when there is none."""
    activity = activity_of(url)
    if activity is not None and activity >= COMPANY_POSTS:
        number, index = divmod(activity - COMPANY_POSTS, 100)
        for c in companies(world):
            if c.number == number and index < 3:
                return post_data(world, activity, author=c.name)
    elif activity is not None and activity >= PERSON_POSTS:
        pid, index = divmod(activity - PERSON_POSTS, 100)
        profile = world.profile_by_id(pid)
        if profile is not None and index < draw(world, "posts-n", profile.url) % 4:
            return post_data(world, activity, author=profile.full_name)
    raise WorldError("NO_POST", f"not an existing LinkedIn post: {url}")


def engagers(world: World, key: str) -> list[Profile]:
    """The people who reacted to and commented on a derived post (up to five)."""
    people = _tables(world)[2]
    if not people:
        return []
    n = draw(world, "engagers", key) % 6
    start = draw(world, "engager", key)
    return [people[(start + 7 * i) % len(people)] for i in range(min(n, len(people)))]


def by_time(items: Iterable[Mapping[str, Any]], node: Mapping[str, Any], key: str = "time"
            ) -> list[dict[str, Any]]:
    """Items newer than ``node["since"]``, at most ``node["limit"]``."""
    since = parse_iso(str(node["since"])) if node.get("since") else None
    out = [dict(i) for i in items if since is None or parse_iso(str(i[key])) >= since]
    return out[: int(node.get("limit") or len(out) or 1)]
