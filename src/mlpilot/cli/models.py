"""``mlpilot models list|show|versions`` and ``mlpilot models alias set|rm``."""

from __future__ import annotations

import click

from mlpilot.cli.context import client, url_option
from mlpilot.cli.output import console, fmt_time, print_json, print_table


@click.group("models")
def models() -> None:
    """Inspect registered models and move their aliases."""


@models.command("list")
@click.option("-q", "--query", default=None, help="Only names containing this text.")
@click.option("-n", "--max-results", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@url_option
def list_(query: str | None, max_results: int, as_json: bool, url: str | None) -> None:
    """List registered models."""
    items = client(url).registry.search_models(query, max_results=max_results)
    if as_json:
        print_json(items)
        return
    print_table(
        None,
        ["name", "latest", "aliases", "updated", "description"],
        (
            [
                m.name,
                m.latest_version,
                ", ".join(f"{a}→{v}" for a, v in sorted(m.aliases.items())) or "-",
                fmt_time(m.updated_at),
                m.description[:60],
            ]
            for m in items
        ),
        empty="no registered models yet: mlpilot.log_model(model, name=...)",
    )


@models.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@url_option
def show(name: str, as_json: bool, url: str | None) -> None:
    """Show a model, its aliases and its recent history."""
    c = client(url)
    model = c.registry.get_model(name)
    history = c.registry.model_history(name, limit=20)
    if as_json:
        print_json({"model": model, "history": history})
        return
    console.print(f"[bold]{model.name}[/bold]  latest version {model.latest_version}")
    if model.description:
        console.print(model.description)
    print_table("aliases", ["alias", "version"], sorted(model.aliases.items()), empty="no aliases")
    print_table(
        "history",
        ["time", "event", "by", "details"],
        ([fmt_time(e.time), e.kind, e.actor, ", ".join(f"{k}={v}" for k, v in e.payload.items())] for e in history),
        empty="no events",
    )


@models.command("versions")
@click.argument("name")
@click.option("-n", "--max-results", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@url_option
def versions(name: str, max_results: int, as_json: bool, url: str | None) -> None:
    """List the versions of model NAME."""
    items = client(url).registry.list_model_versions(name, max_results=max_results)
    if as_json:
        print_json(items)
        return
    print_table(
        f"{name} versions",
        ["version", "aliases", "flavor", "run", "metrics", "created", "sha256"],
        (
            [
                v.version,
                ", ".join(v.aliases) or "-",
                v.flavor,
                (v.run_id or "-")[:12],
                ", ".join(f"{k}={val:.4g}" for k, val in sorted(v.metrics.items())[:3]) or "-",
                fmt_time(v.created_at),
                v.artifact_sha256[:12],
            ]
            for v in items
        ),
        empty=f"model {name!r} has no versions",
    )


@models.group("alias")
def alias() -> None:
    """Point aliases (champion, challenger, …) at versions."""


@alias.command("set")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.argument("version", type=int)
@url_option
def alias_set(name: str, alias_name: str, version: int, url: str | None) -> None:
    """Point ALIAS of model NAME at VERSION."""
    info = client(url).registry.set_alias(name, alias_name, version, actor="cli")
    console.print(f"{name}@{info.alias} → version {info.version}")


@alias.command("rm")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@url_option
def alias_rm(name: str, alias_name: str, url: str | None) -> None:
    """Remove ALIAS from model NAME."""
    client(url).registry.delete_alias(name, alias_name, actor="cli")
    console.print(f"removed {name}@{alias_name}")


COMMANDS = [models]
