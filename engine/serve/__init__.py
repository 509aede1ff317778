"""``seqrun serve``: the webhook receiver. Providers POST run callbacks and webhooks here;
each accepted event is written once to the store (:mod:`engine.store.inbound`) and the
runner consumes it (:mod:`engine.run.inbound`).

config (secrets and public URL from the environment, the URLs to give each provider),
events (what each endpoint accepts, dedupe keys), app (the Starlette app), server (uvicorn).
"""
