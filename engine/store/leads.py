"""Leads: one row per (normalized) profile URL with its CSV data."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine.store import tables as t
from engine.store.codecs import dump_json, load_json
from engine.store.db import StoreBase
from engine.store.rows import Columns, LeadRow


class Leads(StoreBase):
    def upsert_lead(
        self, profile_url: str, data: Mapping[str, Any], *, conn: Connection | None = None
    ) -> int:
        """Insert a lead by (already normalized) profile URL, or merge ``data`` into it."""
        with self.tx(conn) as c:
            r = c.execute(
                sa.select(t.leads.c.id, t.leads.c.data_json).where(
                    t.leads.c.profile_url == profile_url
                )
            ).first()
            if r is None:
                res = c.execute(
                    t.leads.insert().values(
                        profile_url=profile_url, data_json=dump_json(dict(data))
                    )
                )
                return int(res.inserted_primary_key[0])  # type: ignore[index]
            merged = {**(load_json(r.data_json) or {}), **dict(data)}
            c.execute(
                t.leads.update().where(t.leads.c.id == r.id).values(data_json=dump_json(merged))
            )
            return int(r.id)

    def insert_leads(
        self, urls: Sequence[str], data_json: Sequence[str], *, conn: Connection | None = None
    ) -> Sequence[int]:
        """Insert new leads (profile URLs and their data's JSON texts, as a plan's
        EnrollPlan.data_json) in one bulk statement; their ids, in order."""
        if not urls:
            return ()
        with self.tx(conn) as c:
            ids = self.fast.new_ids(c, t.leads, len(urls))
            self.fast.insert_columns(
                c, t.leads, Columns({}, {"id": ids, "profile_url": urls, "data_json": data_json}))
        return ids

    def get_lead(self, lead_id: int, *, conn: Connection | None = None) -> LeadRow | None:
        with self.read(conn) as c:
            r = c.execute(sa.select(t.leads).where(t.leads.c.id == lead_id)).first()
        return None if r is None else LeadRow(r.id, r.profile_url, load_json(r.data_json))

    def lead_by_url(self, profile_url: str, *, conn: Connection | None = None) -> LeadRow | None:
        with self.read(conn) as c:
            r = c.execute(sa.select(t.leads).where(t.leads.c.profile_url == profile_url)).first()
        return None if r is None else LeadRow(r.id, r.profile_url, load_json(r.data_json))

    def lead_ids(
        self, profile_urls: Iterable[str], *, conn: Connection | None = None
    ) -> dict[str, int]:
        """profile URL -> lead id of the stored leads among ``profile_urls``."""
        with self.read(conn) as c:
            rows = self._rows_in(c, "lead_ids", list(profile_urls))
            return {url: int(lead_id) for url, lead_id in rows}

    def leads_by_ids(
        self, ids: Iterable[int], *, conn: Connection | None = None
    ) -> dict[int, LeadRow]:
        with self.read(conn) as c:
            rows = self._rows_in(c, "leads", list(set(ids)))
            return {lid: LeadRow(lid, url, load_json(data)) for lid, url, data in rows}
