"""Async runs: validated batches become run objects, processed input by input."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.sandbox.common import iso, parse_iso
from engine.sandbox.edges.callbacks import Callbacks, callback_url_problem
from engine.sandbox.edges.errors import ERRORS, EdgesError, from_world
from engine.sandbox.edges.wire import (
    FINAL,
    LIST_ACTIONS,
    USER_UID,
    WORKSPACE_UID,
)
from engine.sandbox.world import (
    IdentityState,
    WorldError,
)


class Runs(Callbacks):
    """Run objects in ``state["runs"]`` and their processing."""

    def _validate_batch(self, action: str, body: Any, allowed: frozenset[str],
                        ) -> tuple[list[dict[str, Any]], dict[str, Any], IdentityState | None,
                                   dict[str, Any] | None]:
        if not isinstance(body, dict):
            raise EdgesError("BAD_INPUT", "body must be object")
        if "input" in body and "inputs" not in body:
            raise EdgesError("BAD_INPUT", "body must NOT have additional properties (input)")
        extra = sorted(set(body) - allowed)
        if extra:
            raise EdgesError("BAD_INPUT", f"body must NOT have additional properties ({extra[0]})")
        if action not in self._actions and action not in LIST_ACTIONS:
            raise EdgesError("NOT_FOUND", f"unknown action {action!r}")
        inputs = body.get("inputs")
        if inputs is None:
            inputs = [{}] if action in LIST_ACTIONS or action == "linkedin-me" else None
        if not isinstance(inputs, list) or not inputs:
            raise EdgesError("BAD_INPUT", "body must have required property 'inputs' "
                             "(a non-empty array)")
        if len(inputs) > 100_000:
            raise EdgesError("BAD_INPUT", "body/inputs must NOT have more than 100000 items")
        if not all(isinstance(i, dict) for i in inputs):
            raise EdgesError("BAD_INPUT", "body/inputs/items must be object")
        params = body.get("parameters") or {}
        if not isinstance(params, dict):
            raise EdgesError("BAD_PARAMETERS", "body/parameters must be object")
        if body.get("max_results") is not None:
            params = {**params, "max_results": body["max_results"]}
        ident = self._pick_identity(action, body)
        self._check_sync_mode(action, ident, params)
        callback = body.get("callback")
        if callback == {}:  # what a migrated schedule without one sends (seed 000)
            callback = None
        if callback is not None:
            if not isinstance(callback, dict) or "url" not in callback:
                raise EdgesError("BAD_PARAMETERS", "body/callback must have required property "
                                 "'url'")
            problem = callback_url_problem(callback["url"])
            if problem is not None:
                raise EdgesError("BAD_PARAMETERS", f"body/callback/url {problem}")
            if callback.get("on", "all") not in ("all", "final"):
                raise EdgesError("BAD_PARAMETERS", "body/callback/on must be 'all' or 'final'")
            if not isinstance(callback.get("headers", {}), dict):
                raise EdgesError("BAD_PARAMETERS", "body/callback/headers must be object")
        return inputs, params, ident, callback

    def _new_run(self, action: str, mode: str, inputs: list[dict[str, Any]],
                 params: dict[str, Any], ident: IdentityState | None,
                 callback: dict[str, Any] | None, schedule_uid: str | None = None,
                 since: int | str | None = None) -> dict[str, Any]:
        st = self.state
        uid = self._uid("run")
        now = iso(self.world.now)
        run = {
            "id": len(st["run_order"]) + 1,
            "uid": uid, "run_uid": uid, "batch_uid": f"batch-{uid[4:]}",
            "workspace_uid": WORKSPACE_UID, "user_uid": USER_UID,
            "action_name": action, "execution_mode": mode, "status": "QUEUED",
            "postponed_until": None, "created_at": now, "updated_at": now, "synced_at": None,
            "identity_ids": [ident.uid] if ident else [], "inputs": inputs,
            "parameters": params, "callback": callback, "schedule_uid": schedule_uid,
            "retry_count": 0, "last_error": None, "iteration": 1,
            "next_index": 0, "outputs": [], "since": since,
            "sync_mode": params.get("sync_mode", "full"),
        }
        st["runs"][uid] = run
        st["run_order"].append(uid)
        st["active"].append(uid)
        return run

    @staticmethod
    def _run_out(run: Mapping[str, Any]) -> dict[str, Any]:
        hidden = ("outputs", "next_index", "since", "upto")
        out = {k: v for k, v in run.items() if k not in hidden}
        out["inputs_count"] = len(run["inputs"])
        out["outputs_count"] = len(run["outputs"])
        return out

    async def _process_runs(self) -> None:
        st = self.state
        now = self.world.now
        still: list[str] = []
        snapshot = list(st["active"])
        for uid in snapshot:
            run = st["runs"][uid]
            if run["status"] == "BLOCKED" and run["postponed_until"] and \
                    parse_iso(run["postponed_until"]) > now:
                still.append(uid)
                continue
            await self._process(run)
            if run["status"] not in FINAL:
                still.append(uid)
        # runs queued (appended) by other requests while callbacks were being POSTed
        st["active"] = still + st["active"][len(snapshot):]

    async def _process(self, run: dict[str, Any]) -> None:
        w = self.world
        action = run["action_name"]
        ident = self._edges_identity(run["identity_ids"][0]) if run["identity_ids"] else None
        params = run["parameters"]
        if run["next_index"] == 0:
            run["iteration_started_at"] = iso(w.now)
            if run.get("sync_mode") == "incremental":
                run["upto"] = w.write_mark()  # this iteration lists the writes up to here
        run["status"] = "RUNNING"
        run["postponed_until"] = None
        since, upto = self._mark(run.get("since")), run.get("upto")
        cap = params.get("max_results")
        while run["next_index"] < len(run["inputs"]):
            i = run["next_index"]
            item = run["inputs"][i]
            custom = item.get("custom_data", {})
            output: dict[str, Any] = {"index": i, "custom_data": custom, "input": item}
            try:
                if action in LIST_ACTIONS:
                    data: Any = self._list(action, ident, item, params, since, upto,
                                           inbox=True)
                    if isinstance(cap, int) and cap > 0:
                        data = data[:cap]
                else:
                    data = self._perform(action, ident, item, params)
                output.update(status="SUCCEEDED", data=data, error=None)
            except (EdgesError, WorldError) as raw:
                exc = from_world(raw) if isinstance(raw, WorldError) else raw
                err = {"error_label": exc.label, "error_scope": ERRORS.get(
                    exc.label, (424, "input"))[1], "message": exc.message,
                    "status_code": exc.status, "params": exc.params}
                if exc.label == "LIMIT_REACHED":
                    # async/schedule: postponed and retried by the platform
                    run["status"] = "BLOCKED"
                    run["postponed_until"] = exc.params.get("postponed_until")
                    run["retry_count"] += 1
                    run["last_error"] = {**err, "params": {**exc.params,
                                                           "appendix": "smart limit"}}
                    run["updated_at"] = iso(w.now)
                    return
                output.update(status="FAILED", data=None, error=err)
            run["next_index"] = i + 1
            run["outputs"].append(output)
            run["updated_at"] = iso(w.now)
            done = run["next_index"] >= len(run["inputs"])
            if done:
                self._finish(run)
            cb = run.get("callback")
            if cb and cb.get("on", "all") == "all":
                await self._callback(run, output)
        if run["status"] not in FINAL:
            self._finish(run)
        cb = run.get("callback")
        if cb and cb.get("on", "all") == "final":
            await self._callback(run, None)

    @staticmethod
    def _next_since(run: Mapping[str, Any]) -> int | str | None:
        """Where the next iteration of a finished incremental run starts: after the writes
        this one listed (its ``upto``), or where this one started if it listed nothing (every
        input FAILED). A run kept before the write numbers has only its start time."""
        if "upto" not in run:
            started: str = run.get("iteration_started_at") or run["created_at"]
            return started
        since: int | str | None = run["upto"] if run["status"] != "FAILED" else run.get("since")
        return since

    def _finish(self, run: dict[str, Any]) -> None:
        outs = run["outputs"][-len(run["inputs"]):] if run["inputs"] else []
        ok = sum(1 for o in outs if o["status"] == "SUCCEEDED")
        run["status"] = ("SUCCEEDED" if ok == len(outs) else "FAILED" if ok == 0
                         else "PARTIAL_SUCCEEDED")
        run["synced_at"] = iso(self.world.now)
        run["updated_at"] = iso(self.world.now)
        failed = [o for o in outs if o["status"] == "FAILED"]
        if failed:
            run["last_error"] = failed[-1]["error"]
