"""The Edges API (``/v1``) of the sandbox, over the simulated LinkedIn (:mod:`.world`).

Live runs answer with the action's result JSON; async runs and schedules keep run and schedule
objects in ``world.api_state["edges"]`` (so they persist with the world) and are processed
lazily: at the start of every Edges request and on :meth:`EdgesAPI.tick`. Where the docs
disagree the sandbox accepts and emits both (run objects carry ``uid`` and ``run_uid``).
Shapes not found in the docs are marked *inferred* below (among them: an async or schedule
run of ``linkedin-extract-messages`` with no thread input is an inbox sync, see
``Lists._messages_raw``).

Built in layers, each using only those below it: base (state, auth, errors, identities),
shapes, actions, lists, callbacks, runs, schedules, pump, live (the run endpoints), reads,
manage (identity creation, integration webhooks).

Example::

    api = EdgesAPI(world)
    app = Starlette(routes=[Mount("/v1", routes=api.routes())])
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from engine.sandbox.edges.manage import Manage

__all__ = ["EdgesAPI"]


class EdgesAPI(Manage):
    """Routes and state of the sandbox's Edges API. ``callback_client`` POSTs run callbacks;
    without one they are queued in ``state["callbacks"]`` (see the inspection API)."""

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/actions/{action}/run/live", self.run_live, methods=["POST"]),
            Route("/actions/{action}/run/async", self.run_async, methods=["POST"]),
            Route("/actions/{action}/run/schedule", self.run_schedule, methods=["POST"]),
            Route("/identities", self.list_identities, methods=["GET"]),
            Route("/identities", self.create_identity, methods=["POST"]),
            Route("/integrations/linkedin/webhooks", self.list_integration_webhooks,
                  methods=["GET"]),
            Route("/integrations/linkedin/webhooks", self.add_integration_webhook_route,
                  methods=["POST"]),
            Route("/identities/{uid}/actions/{action}/limits", self.identity_limits,
                  methods=["GET"]),
            Route("/workspaces", self.workspaces, methods=["GET"]),
            Route("/runs", self.list_runs, methods=["GET"]),
            Route("/runs/callbacks/{uid}", self.get_callback, methods=["GET"]),
            Route("/runs/{uid}", self.get_run, methods=["GET"]),
            Route("/runs/{uid}/status", self.get_run_status, methods=["GET"]),
            Route("/runs/{uid}/outputs", self.get_run_outputs, methods=["GET"]),
            Route("/runs/{uid}/continue", self.continue_run, methods=["POST"]),
            Route("/schedules", self.list_schedules, methods=["GET"]),
            Route("/schedules/{uid}", self.get_schedule, methods=["GET"]),
            Route("/schedules/{uid}/cancel", self.cancel_schedule, methods=["POST"]),
        ]
