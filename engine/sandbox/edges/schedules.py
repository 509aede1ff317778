"""Schedules: cron or one-off iterations that start runs when due."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter

from engine.sandbox.common import iso, parse_iso
from engine.sandbox.edges.runs import Runs
from engine.sandbox.edges.wire import (
    FINAL,
)


class Schedules(Runs):
    """Schedule objects in ``state["schedules"]`` and their due iterations."""

    @staticmethod
    def _next_cron(cron: str, tz: str, after: datetime) -> datetime:
        local = after.astimezone(ZoneInfo(tz))
        nxt: datetime = croniter(cron, local).get_next(datetime)
        return nxt.astimezone(after.tzinfo)

    @staticmethod
    def _schedule_out(s: Mapping[str, Any]) -> dict[str, Any]:
        # "since": the watermark schedules kept before their runs did (an old saved world)
        return {k: v for k, v in s.items() if k not in ("since",)}

    def _due_schedules(self) -> int:
        st = self.state
        now = self.world.now
        started = 0
        for uid in st["schedule_order"]:
            s = st["schedules"][uid]
            if s["status"] != "ACTIVE" or not s["next_run_at"]:
                continue
            due = parse_iso(s["next_run_at"])
            if due > now:
                continue
            last = st["runs"].get(s["last_run_uid"]) if s["last_run_uid"] else None
            if last is not None and last["status"] not in FINAL:
                s["skipped_iterations"] += 1  # the previous run is still going
            else:
                ident = self._edges_identity(s["identity_ids"][0]) if s["identity_ids"] else None
                params = dict(s["parameters"])
                if s.get("max_results") is not None:
                    params["max_results"] = s["max_results"]
                since = None
                if params.get("sync_mode") == "incremental" and last is not None:
                    since = self._next_since(last)  # after what the previous run listed
                run = self._new_run(s["action_name"], "SCHEDULE", s["inputs"], params, ident,
                                    s["callback"], schedule_uid=uid, since=since)
                s["last_run_uid"] = run["uid"]
                s["run_uids"].append(run["uid"])
                s["iterations"] += 1
                started += 1
            if s["cron"]:
                s["next_run_at"] = iso(self._next_cron(s["cron"], s["timezone"], now))
            else:
                s["next_run_at"] = None
                s["status"] = "COMPLETED"
            s["updated_at"] = iso(now)
        return started
