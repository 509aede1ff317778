"""LinkedAPI people search: the one-node workflow ``st.searchPeople`` (``term``, ``limit``,
``filter``: ``position``, ``currentCompanies``, ``locations``). Its filter has no connection
degree: ``network`` is not a LinkedAPI filter (lint says so).

>>> search_body(PeopleSearch(keywords="fintech", title="CTO", location="Paris", max=5))["filter"]
{'position': 'CTO', 'locations': ['Paris']}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.model import PeopleSearch

FILTERS = frozenset({"keywords", "title", "company", "location"})


def search_body(search: PeopleSearch) -> dict[str, Any]:
    body: dict[str, Any] = {"actionType": "st.searchPeople", "limit": search.max}
    if search.keywords:
        body["term"] = search.keywords
    flt: dict[str, Any] = {}
    if search.title:
        flt["position"] = search.title
    if search.company:
        flt["currentCompanies"] = [search.company]
    if search.location:
        flt["locations"] = [search.location]
    if flt:
        body["filter"] = flt
    return body


def lead_row(person: Mapping[str, Any]) -> dict[str, str] | None:
    """A found person (``name``, ``publicUrl``, ``headline``, ``location``) as a CSV row."""
    url = person.get("publicUrl")
    if not url:
        return None
    row = {"linkedin_profile_url": str(url)}
    name = str(person.get("name") or "").strip()
    if name:
        row["full_name"] = name
        row["first_name"] = name.split()[0]
    for key in ("headline", "location"):
        if person.get(key):
            row[key] = str(person[key])
    return row
