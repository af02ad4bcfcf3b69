"""``mlpilot server``: the control plane (REST API, OpenAPI at /docs)."""

from __future__ import annotations

import ipaddress
import logging

import click

from mlpilot.cli.context import settings
from mlpilot.cli.output import err_console


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
    """Run the control plane. Bound beyond loopback, every request needs a token."""
    import uvicorn

    from mlpilot.api import Services, create_app

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
    uvicorn.run(app, host=host, port=port, log_level=s.log_level)


COMMANDS = [server]
