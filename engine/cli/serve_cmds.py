"""``seqrun serve``: the webhook receiver (see engine/serve/)."""

from __future__ import annotations

from pathlib import Path

import click

from engine.cli.options import state_dir_option


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to bind (loopback: put a TLS proxy in front for providers).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--max-body", default=2 * 1024 * 1024, show_default=True,
              type=click.IntRange(1024, 64 * 1024 * 1024), help="Largest body accepted, bytes.")
@state_dir_option()
def serve_cmd(host: str, port: int, max_body: int, state_dir: Path) -> int:
    """Receive provider callbacks and webhooks into the store until interrupted.

    Secrets from the environment: SEQRUN_EDGES_WEBHOOK_SECRET (the X-Seqrun-Secret header of
    Edges callbacks and webhooks), SEQRUN_LINKEDAPI_WEBHOOK_SECRET (a path token of LinkedAPI
    webhooks); SEQRUN_PUBLIC_URL is where providers reach it. `seqrun run` consumes the
    events; both can share one store.
    """
    from engine import runtime  # deferred: the store, uvicorn
    from engine.serve.config import ServeConfig, callback_urls

    config = ServeConfig.from_env(max_body=max_body)
    config.require_a_secret()
    click.echo(f"seqrun serve on http://{host}:{port} (store in {state_dir}); give providers:")
    for url in callback_urls(config, f"http://{host}:{port}"):
        click.echo(f"  {url.provider:<10} {url.purpose}\n             {url.url}  [{url.auth}]")
    if config.public_url is None:
        click.echo("  (SEQRUN_PUBLIC_URL is not set: these are loopback URLs; providers need "
                   "a public https URL that reaches this port)")
    runtime.serve(state_dir, host, port, config)
    return 0


COMMANDS = (serve_cmd,)
