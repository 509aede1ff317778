"""Search and list filters (``filter`` of st/nv.searchPeople, st.retrieveConnections,
st/nv.searchCompanies, company employees): every given field must match (AND); a list field
matches when any of its values does (OR), as LinkedAPI documents. Text matches ignore case;
names must be equal, the other fields contain the value."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from engine.sandbox.linkedapi import catalog
from engine.sandbox.world import Profile, World


def _has(haystack: str, needle: Any) -> bool:
    return str(needle).strip().lower() in haystack.lower()


def _any(values: Any, test: Callable[[Any], bool]) -> bool:
    items = values if isinstance(values, list) else [values]
    return any(test(v) for v in items)


def person_matches(world: World, p: Profile, flt: Mapping[str, Any]) -> bool:
    """Whether profile ``p`` passes a people filter."""
    checks: dict[str, Callable[[Any], bool]] = {
        "firstName": lambda v: p.first_name.lower() == str(v).strip().lower(),
        "lastName": lambda v: p.last_name.lower() == str(v).strip().lower(),
        "position": lambda v: _has(p.job_title, v) or _has(p.headline, v),
        "locations": lambda v: _any(v, lambda x: _has(p.location, x)),
        "industries": lambda v: _any(
            v, lambda x: catalog.industry(world, p.company).lower() == str(x).lower()),
        "currentCompanies": lambda v: _any(v, lambda x: bool(p.company) and _has(p.company, x)),
        "previousCompanies": lambda v: _any(
            v, lambda x: any(_has(c, x) for c in catalog.previous_companies(world, p))),
        "schools": lambda v: _any(v, lambda x: _has(catalog.school(world, p), x)),
        "positions": lambda v: _any(v, lambda x: _has(p.job_title, x)),
        "yearsOfExperience": lambda v: _any(v, lambda x: _years_bucket(world, p) == x),
        "yearsOfExperiences": lambda v: _any(v, lambda x: _years_bucket(world, p) == x),
    }
    return all(checks[k](v) for k, v in flt.items() if k in checks and v not in (None, [], ""))


def _years_bucket(world: World, p: Profile) -> str:
    years = catalog.years_of_experience(world, p)
    return next(name for name, lo, hi in catalog.YEARS_BUCKETS if lo <= years <= hi)


def company_matches(world: World, c: catalog.Company, flt: Mapping[str, Any]) -> bool:
    """Whether company ``c`` passes a companies filter (sizes, locations, industries,
    annualRevenue in millions of USD)."""
    data = catalog.company_data(world, c)
    checks: dict[str, Callable[[Any], bool]] = {
        "sizes": lambda v: _any(v, lambda x: catalog.size_bucket(data["employeesCount"]) == x),
        "locations": lambda v: _any(v, lambda x: _has(data["location"], x)),
        "industries": lambda v: _any(v, lambda x: data["industry"].lower() == str(x).lower()),
        "annualRevenue": lambda v: _revenue_ok(catalog.revenue_musd(world, c), v),
    }
    return all(checks[k](v) for k, v in flt.items() if k in checks and v not in (None, [], ""))


def _revenue_ok(revenue: float, bounds: Any) -> bool:
    if not isinstance(bounds, Mapping):
        return True
    low = float(str(bounds.get("min", "0")))
    high_text = str(bounds.get("max", "1000+"))
    high = float("inf") if high_text.endswith("+") else float(high_text)
    return low <= revenue <= high


def term_matches(text: str, term: str) -> bool:
    """Every word of ``term`` is in ``text``."""
    hay = text.lower()
    return all(w in hay for w in term.lower().split())
