"""Edges people search: ``linkedin-search-people`` over a LinkedIn people-search URL whose
facets carry the filters (``keywords``, ``titleFreeText``, ``company``, ``network``).

LinkedIn's location facet takes geo ids, not text: ``location`` is not an Edges filter
(lint says so; put a city in ``keywords``).

>>> search_url(PeopleSearch(keywords="fintech", title="CTO", network=("2nd",)))
'https://www.linkedin.com/search/results/people/?keywords=fintech&titleFreeText=CTO&network=%5B%22S%22%5D'
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from engine.model import PeopleSearch

FILTERS = frozenset({"keywords", "title", "company", "network"})
_DEGREES = {"1st": "F", "2nd": "S", "3rd": "O"}
_COLUMNS = ("full_name", "first_name", "last_name", "company_name", "job_title", "location",
            "headline")


def search_url(search: PeopleSearch) -> str:
    query: dict[str, str] = {}
    if search.keywords:
        query["keywords"] = search.keywords
    if search.title:
        query["titleFreeText"] = search.title
    if search.company:
        query["company"] = search.company
    if search.network:
        query["network"] = json.dumps([_DEGREES[d] for d in search.network],
                                      separators=(",", ":"))
    return "https://www.linkedin.com/search/results/people/?" + urlencode(query)


def lead_row(item: Mapping[str, Any]) -> dict[str, str] | None:
    """A search result as a leads CSV row (None without a profile URL)."""
    url = item.get("linkedin_profile_url")
    if not url and item.get("linkedin_profile_handle"):
        url = f"https://www.linkedin.com/in/{item['linkedin_profile_handle']}"
    if not url:
        return None
    row = {"linkedin_profile_url": str(url)}
    row.update({c: str(item[c]) for c in _COLUMNS if item.get(c)})
    return row
