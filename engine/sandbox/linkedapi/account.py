"""The account API (seed 003): ``POST /account/workflow`` with ``result-handling: long | reslink |
hook`` and ``GET /account/results/{hash}``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from engine.sandbox.linkedapi.base import NO_BODY, ApiBase, account_error, api_base
from engine.sandbox.linkedapi.bodies import account_body
from engine.sandbox.linkedapi.execute import run_due
from engine.sandbox.linkedapi.validate import InvalidWorkflow, validate
from engine.sandbox.linkedapi.wire import INVALID_WORKFLOW_MESSAGE, UNFINISHED_CAP


class AccountApi(ApiBase):
    """Endpoints of the account API."""

    async def post_account_workflow(self, request: Request) -> JSONResponse:
        run_due(self.world)
        account = self._auth(request, account_error)
        if isinstance(account, JSONResponse):
            return account
        handling = request.headers.get("result-handling", "long")
        if handling not in ("long", "reslink", "hook"):
            return account_error(
                "invalidRequestPayload", "result-handling must be long, reslink or hook", 400
            )
        webhook = request.headers.get("webhook")
        if handling == "hook" and not webhook:
            return account_error(
                "invalidRequestPayload", "result-handling hook needs a webhook header", 400
            )
        body = await self._body(request)
        if body is NO_BODY:
            return account_error("invalidRequestBody", "the body is not JSON", 400)
        try:
            validate(body)
        except InvalidWorkflow as exc:
            return JSONResponse(
                {
                    "status": "failed",
                    "error": {
                        "type": "invalidWorkflow",
                        "message": f"{INVALID_WORKFLOW_MESSAGE} {exc}",
                    },
                }
            )
        if not self.world.auth_ok(account):
            return JSONResponse(
                {
                    "status": "failed",
                    "error": {
                        "type": "linkedinAccountSignedOut",
                        "message": "the LinkedIn account is signed out",
                    },
                }
            )
        if self.st.unfinished(account) >= UNFINISHED_CAP:
            return account_error(
                "tooManyRequests",
                f"at most {UNFINISHED_CAP} unfinished workflows per account",
                429,
                **{"Retry-After": str(int(self.st.base_seconds))},
            )
        fault, perform = await self._fault("account.workflow", account_error)
        if fault is not None:
            if perform:
                self._submit(account, body, "account", handling, webhook)
            return fault
        record = self._submit(account, body, "account", handling, webhook)
        return JSONResponse(account_body(record, api_base(request)))

    async def get_account_result(self, request: Request) -> JSONResponse:
        run_due(self.world)
        account = self._auth(request, account_error)
        if isinstance(account, JSONResponse):
            return account
        fault, _ = await self._fault("account.results", account_error)
        if fault is not None:
            return fault
        wid = self.st.results.get(request.path_params["result_hash"])
        record = self.st.workflows.get(wid or "")
        if record is None or record.account != account:
            return account_error("workflowNotFound", "no such result", 404)
        return JSONResponse(account_body(record, api_base(request)))
