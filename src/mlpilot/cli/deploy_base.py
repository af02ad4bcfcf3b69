"""What the ``mlpilot deploy …`` commands share: the backend they act on, options, and rendering."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from mlpilot.cli.context import settings
from mlpilot.cli.output import console, fmt_time, print_json, print_table

if TYPE_CHECKING:
    from mlpilot.deploy import DeploymentInfo, DeploymentsBackend, RevisionInfo

__all__ = ["backend", "done", "gate_option", "json_option", "print_history", "reason_option", "show_info"]

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
reason_option = click.option("-r", "--reason", default="", help="Why: recorded in the history and audit trail.")
gate_option = click.option("--skip-gate", is_flag=True, help="Skip the gate (recorded with the reason).")


def backend(url: str | None = None) -> DeploymentsBackend:
    """``--url``, else MLPILOT_SERVER_URL, else the embedded store (with its artifacts, for the gate)."""
    s = settings()
    target = url or s.server_url
    if target is not None and target.startswith(("http://", "https://")):
        from mlpilot.remote.deploy import RestDeployments
        from mlpilot.remote.http import HttpTransport

        token = s.token.get_secret_value() if s.token else None
        transport = HttpTransport(target, token=token)
        _close_with_command(transport.close)
        return RestDeployments(transport)
    from mlpilot.artifacts import artifact_store_from_settings
    from mlpilot.deploy import Deployments
    from mlpilot.store import Store

    store = Store(target or s.resolved_db_url, busy_timeout=s.sqlite_busy_timeout)
    _close_with_command(store.close)
    return Deployments(store, artifacts=artifact_store_from_settings(s))


def _close_with_command(close: Callable[[], None]) -> None:
    """Close a connection when the command ends (a long-running command closes it on exit)."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.call_on_close(close)


def show_info(info: DeploymentInfo) -> None:
    spec = info.spec
    console.print(
        f"[bold]{info.name}[/bold] ({spec.model})  revision {info.revision}  {spec.strategy} / [bold]{spec.state}"
        f"[/bold]  by {info.updated_by} at {fmt_time(info.updated_at)}"
    )
    if spec.message:
        console.print(spec.message)
    if spec.features is not None:
        console.print(f"feature service: {spec.features.service} (project {spec.features.project})")
    print_table(
        None,
        ["variant", "version", "role", "weight %"],
        ([v.name, v.version, v.role, f"{v.weight:g}"] for v in spec.variants),
    )


def done(info: DeploymentInfo, as_json: bool) -> None:
    if as_json:
        print_json(info)
    else:
        show_info(info)


def print_history(history: list[RevisionInfo]) -> None:
    print_table(
        "history",
        ["rev", "time", "action", "by", "state", "variants", "reason"],
        (
            [
                h.revision,
                fmt_time(h.time),
                h.action,
                h.actor,
                h.spec.state,
                ", ".join(f"{v.name}:{v.weight:g}" for v in h.spec.variants),
                h.reason,
            ]
            for h in history
        ),
        empty="no revisions in that range",
    )
