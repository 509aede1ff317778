"""What every LinkedAPI endpoint shares: error envelopes, auth, injected faults, submission."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from engine.sandbox.common import FAULT_HEADER, inject
from engine.sandbox.linkedapi.execute import finish
from engine.sandbox.linkedapi.state import LinkedApiState, WorkflowRecord, state
from engine.sandbox.linkedapi.validate import count_actions
from engine.sandbox.linkedapi.wire import IDENT_PREFIX
from engine.sandbox.world import World


def envelope_error(kind: str, message: str, status: int, **headers: str) -> JSONResponse:
    return JSONResponse(
        {"success": False, "error": {"type": kind, "message": message}},
        status_code=status,
        headers=headers or None,
    )


def account_error(kind: str, message: str, status: int, **headers: str) -> JSONResponse:
    return JSONResponse(
        {"status": "failed", "error": {"type": kind, "message": message}},
        status_code=status,
        headers=headers or None,
    )


ErrorFn = Callable[..., JSONResponse]


NO_BODY = object()


def api_base(request: Request) -> str:
    """This API's own base URL (with its mount path), for the resultLink."""
    url = str(request.url.replace(query=""))
    result_hash = request.path_params.get("result_hash")
    for tail in ("/account/workflow", f"/account/results/{result_hash}"):
        if url.endswith(tail):
            return url[: -len(tail)]
    return url


class ApiBase:
    """Auth by ``linked-api-token`` + ``identification-token``, faults, submission."""

    def __init__(self, world: World) -> None:
        self.world = world

    @property
    def st(self) -> LinkedApiState:
        return state(self.world)

    def _auth(self, request: Request, error: ErrorFn) -> str | JSONResponse:
        """The account uid the request acts for, or the error response."""
        token = request.headers.get("linked-api-token")
        if not token:
            return error("linkedApiTokenRequired", "linked-api-token header is required", 401)
        if token != self.st.api_token:
            return error("invalidLinkedApiToken", "the linked-api-token is not valid", 401)
        ident_token = request.headers.get("identification-token") or request.headers.get(
            "account-api-token"
        )
        if not ident_token:
            return error(
                "identificationTokenRequired", "identification-token header is required", 401
            )
        st = self.st
        regenerated = next((u for u, t in st.tokens.items() if t == ident_token), None)
        ident = self.world.find_identity(regenerated or ident_token)
        if ident is None and ident_token.startswith(IDENT_PREFIX):
            ident = self.world.find_identity(ident_token[len(IDENT_PREFIX) :])
        if (
            ident is None
            or ident.provider not in (None, "linkedapi")
            or ident.uid in st.disconnected
            or (ident.uid in st.tokens and regenerated is None)  # its old token
        ):
            return error("invalidIdentificationToken", "the identification-token is not valid", 401)
        return ident.uid

    async def _fault(self, op: str, error: ErrorFn) -> tuple[JSONResponse | None, bool]:
        """(response to send instead, whether to perform the call first)."""
        # LinkedAPI documents no request rate limit (only the cap of unfinished workflows,
        # answered by the endpoints themselves) except on the admin API: elsewhere an injected
        # fault is a server error or a timeout, never a 429
        kinds = ("429", "5xx", "timeout") if op == "admin" else ("5xx", "timeout")
        plan = await inject(self.world, "linkedapi", op, kinds)
        if plan is None:
            return None, False
        faults = self.world.config.faults
        if plan.kind == "429":
            headers = {"Retry-After": str(faults.retry_after_s)}
            return error("tooManyRequests", "too many requests", 429, **headers), False
        if plan.kind == "5xx":
            return error("httpError", "internal server error", 503), False
        # the in-process transport turns this into httpx.ReadTimeout; over loopback a 504
        return error("httpError", "gateway timeout", 504, **{FAULT_HEADER: "timeout"}), plan.after

    def _submit(
        self, account: str, body: Any, api: str, handling: str, webhook: str | None
    ) -> WorkflowRecord:
        st = self.st
        now = self.world.clock.now()
        st.seq += 1
        duration = st.base_seconds + st.seconds_per_action * count_actions(body)
        wid = f"wf-{hashlib.sha256(f'{self.world.seed}:{st.seq}'.encode()).hexdigest()[:16]}"
        record = WorkflowRecord(
            workflow_id=wid,
            account=account,
            body=body,
            api=api,
            submitted_at=now,
            finish_at=now + timedelta(seconds=duration),
            seq=st.seq,
            result_handling=handling,
            webhook=webhook,
        )
        if api == "account" and handling == "reslink":
            record.result_hash = hashlib.sha256(f"res:{wid}".encode()).hexdigest()[:24]
            st.results[record.result_hash] = wid
        st.workflows[wid] = record
        st.touch(record)
        if handling == "long":
            finish(self.world, st, record)
        return record

    async def _body(self, request: Request) -> Any:
        try:
            return await request.json()
        except ValueError:
            return NO_BODY
