"""The key-value table: small JSON documents by (namespace, key)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine.store import tables as t
from engine.store.codecs import dump_json, load_json, utcnow
from engine.store.db import StoreBase


def _kv_select() -> sa.Select[Any]:
    return sa.select(t.kv.c.value_json).where(
        t.kv.c.ns == sa.bindparam("ns"), t.kv.c.key == sa.bindparam("key")
    )


class KV(StoreBase):
    def kv_get(self, ns: str, key: str, *, conn: Connection | None = None) -> Any | None:
        with self.read(conn) as c:
            rows = self._select(c, "kv", _kv_select, ns=ns, key=key)
        return load_json(rows[0].value_json) if rows else None

    def kv_put(self, ns: str, key: str, value: Any, *, conn: Connection | None = None) -> None:
        with self.tx(conn) as c:
            self._upsert(
                c,
                t.kv,
                {"ns": ns, "key": key, "value_json": dump_json(value), "updated_at": utcnow()},
                ("ns", "key"),
                ("value_json", "updated_at"),
            )

    def kv_delete(self, ns: str, key: str, *, conn: Connection | None = None) -> bool:
        with self.tx(conn) as c:
            res = c.execute(t.kv.delete().where(t.kv.c.ns == ns, t.kv.c.key == key))
        return bool(res.rowcount)

    def kv_items(self, ns: str, *, conn: Connection | None = None) -> dict[str, Any]:
        with self.read(conn) as c:
            rows = c.execute(
                sa.select(t.kv.c.key, t.kv.c.value_json).where(t.kv.c.ns == ns).order_by(t.kv.c.key)
            ).all()
        return {r.key: load_json(r.value_json) for r in rows}
