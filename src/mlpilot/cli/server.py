"""``mlpilot server``: the control plane (REST API, OpenAPI at /docs).

SIGINT (Ctrl-C) and SIGTERM (what Kubernetes sends a pod it stops) shut it down gracefully: it stops accepting
connections, finishes the requests in flight, stops its control loops, closes the stores, and exits 0.
"""

from __future__ import annotations

import ipaddress
import logging

import click

from mlpilot.cli.context import settings
from mlpilot.cli.output import err_console
from mlpilot.errors import MlpilotError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command("server")
@click.option("--host", default=None, help="Address to bind (default MLPILOT_HOST or 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default MLPILOT_PORT or 5080).")
def server(host: str | None, port: int | None) -> None:
    """Run the control plane. Bound beyond loopback, every request needs a token.

    SIGINT or SIGTERM stops it gracefully (requests in flight finish) with exit code 0.
    """
    import uvicorn

    from mlpilot.api import Services, create_app
    from mlpilot.cli.serve import run_until_stopped

    s = settings()
    host = host or s.host
    port = port or s.port
    require_auth = not is_loopback(host)
    services = Services.from_settings(s)
    app = create_app(services, require_auth=require_auth)
    logging.basicConfig(level=s.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    err_console.print(
        f"mlpilot control plane on http://{host}:{port} (store: {services.store.safe_url}; "
        f"auth: {'token required' if require_auth else 'writes open on loopback'})"
    )
    config = uvicorn.Config(app, host=host, port=port, log_level=s.log_level, timeout_graceful_shutdown=30)
    runner = uvicorn.Server(config)
    try:
        run_until_stopped(runner.run)
    finally:
        services.close()
    lifespan = getattr(runner, "lifespan", None)
    if not runner.started and getattr(lifespan, "should_exit", False):
        # The app's start-up failed (uvicorn logged why) and uvicorn returned: a failure, not a stop.
        raise MlpilotError("mlpilot server: the control plane failed to start (see the log above)")
    err_console.print("mlpilot control plane stopped")


COMMANDS = [server]
