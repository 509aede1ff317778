"""Leads from a provider's people search (``leads: {search: ...}``): the provider's adapter
asks, the rows are read by the leads CSV's rules (:func:`engine.manifest.leads.leads_from_rows`)
and planned like CSV rows (de-duplication, the do-not-contact list, one lead one voice).

Used by ``plan``/``apply`` (:func:`engine.apply.plan.make_plan`) and ``seqrun leads search``.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from engine.clock import Clock
from engine.errors import ConfigError
from engine.manifest.leads import LeadImport, leads_from_rows
from engine.model import PeopleSearch, Sequence
from engine.providers import REGISTRY
from engine.providers.base import Provider

ClientFor = Callable[[str], httpx.AsyncClient]


def searcher(provider: str, client_for: ClientFor, clock: Clock | None) -> Provider:
    """The provider's adapter (ConfigError when it has no people search)."""
    spec = REGISTRY.get(provider)
    if spec is None or spec.factory is None or not spec.search_filters:
        able = ", ".join(sorted(n for n, s in REGISTRY.items() if s.search_filters))
        raise ConfigError(f"provider {provider} has no people search (providers with one: "
                          f"{able})")
    return spec.factory(client_for(provider), clock=clock)


async def search_people(provider: str, identity: str, search: PeopleSearch, *,
                        client_for: ClientFor, clock: Clock | None = None) -> list[dict[str, str]]:
    """The people the provider finds, as leads CSV rows (not yet normalized)."""
    unsupported = [f for f in search.filters() if f not in REGISTRY[provider].search_filters] \
        if provider in REGISTRY else []
    if unsupported:
        raise ConfigError(f"{provider}'s people search has no {unsupported[0]!r} filter")
    return await searcher(provider, client_for, clock).search_people(identity, search)


async def search_leads(seq: Sequence, *, client_for: ClientFor, clock: Clock | None,
                       start: LeadImport | None = None) -> tuple[LeadImport, int]:
    """The sequence's search as a LeadImport (added to ``start``, its CSV) and how many
    people the search returned."""
    search = seq.leads.search
    assert search is not None
    identity = search.identity or seq.identities[0]
    rows = await search_people(seq.provider, identity, search, client_for=client_for,
                               clock=clock)
    source = f"{seq.name}.leads.search({seq.provider}, {identity})"  # the search, by sequence
    return leads_from_rows(rows, source, start=start), len(rows)
