"""``seqrun sandbox serve``: the simulated LinkedIn over HTTP (see engine/sandbox/server.py).

Commands return an int exit code; errors are raised from engine.errors.
"""

from __future__ import annotations

import os
from pathlib import Path

import click


@click.group("sandbox")
def sandbox_group() -> None:
    """The sandbox: Edges, LinkedAPI and ConnectSafely over a simulated LinkedIn."""


@sandbox_group.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@click.option("--scenario", type=click.Path(dir_okay=False, path_type=Path),
              help="A scenario file (schemas/scenario.json) describing the world.")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Keep the world here (sandbox.db, written through before every answer).")
@click.option("--replace", is_flag=True,
              help="With --scenario and a --state-dir that holds a world: start over from the "
                   "scenario (without it that is refused).")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seed when neither scenario nor saved state sets one.")
@click.option("--latency", type=click.Choice(["real", "fast", "none"]), default=None,
              help="How long calls and LinkedAPI workflows take: real (per-provider delays, "
              "workflows of seconds), fast (no call delay, 1 s + 1 s per workflow action) or "
              "none. Default: the saved world's, else fast.")
def serve_cmd(host: str, port: int, scenario: Path | None, state_dir: Path | None,
              seed: int, replace: bool, latency: str | None) -> int:
    """Serve the sandbox on HTTP (real clock) until interrupted.

    Base URLs: Edges http://HOST:PORT/v1, LinkedAPI http://HOST:PORT/linkedapi,
    ConnectSafely http://HOST:PORT/linkedin; inspection and control under /_sandbox, for
    loopback clients only unless SEQRUN_SANDBOX_TOKEN is set (then every /_sandbox request
    carries it in X-Sandbox-Token); a --host beyond loopback needs that token.
    """
    # deferred: the sandbox's server (Starlette, uvicorn) and scenario schema (jsonschema)
    from engine.sandbox.guard import TOKEN_ENV
    from engine.sandbox.scenario import load_scenario
    from engine.sandbox.server import serve_forever

    if scenario is not None:
        load_scenario(scenario)  # fail fast with every problem, before binding the port
    serve_forever(host, port, scenario=scenario, state_dir=state_dir, seed=seed,
                  replace=replace, control_token=os.environ.get(TOKEN_ENV) or None,
                  latency=latency)
    return 0


COMMANDS = (sandbox_group,)
