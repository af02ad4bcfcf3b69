"""``mlpilot tokens create|list|revoke``: manage API tokens in the local metadata store."""

from __future__ import annotations

import click

from mlpilot.auth import ROLES, TokenService
from mlpilot.cli.context import local_store
from mlpilot.cli.output import console, fmt_time, print_json, print_table


@click.group("tokens")
def tokens() -> None:
    """Manage API tokens for the control plane (stored hashed; the secret is shown once)."""


@tokens.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), default="viewer", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def create(name: str, role: str, as_json: bool) -> None:
    """Create a token NAME with a ROLE and print its secret once."""
    secret, info = TokenService(local_store()).create(name, role=role, actor="cli")
    if as_json:
        print_json({"token": secret, **info.__dict__})
        return
    console.print(f"created token [bold]{info.name}[/bold] with role [bold]{info.role}[/bold]")
    console.print("secret (shown once, store it now):")
    click.echo(secret)


@tokens.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(as_json: bool) -> None:
    """List tokens (never their secrets)."""
    items = TokenService(local_store()).list()
    if as_json:
        print_json(items)
        return
    print_table(
        "API tokens",
        ["name", "role", "prefix", "created", "last used", "revoked"],
        (
            [
                t.name,
                t.role,
                t.prefix + "…",
                fmt_time(t.created_at),
                fmt_time(t.last_used_at),
                fmt_time(t.revoked_at),
            ]
            for t in items
        ),
        empty="no tokens yet: mlpilot tokens create NAME --role editor",
    )


@tokens.command("revoke")
@click.argument("name")
def revoke(name: str) -> None:
    """Revoke token NAME; requests using it are refused from now on."""
    info = TokenService(local_store()).revoke(name, actor="cli")
    console.print(f"revoked token [bold]{info.name}[/bold]")


COMMANDS = [tokens]
