"""``mlpilot deploy …`` operations beyond starting rollouts: promote (with ``--force``), verify a blue-green
preview, advance a canary, release a standby, post business outcomes, read the history and the audit trail,
delete. Each is one call of the :class:`~mlpilot.deploy.DeploymentsBackend`, local or remote (``--url``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mlpilot.cli.context import url_option
from mlpilot.cli.deploy_base import backend, done, json_option, print_history, reason_option
from mlpilot.cli.output import console, fmt_time, print_json, print_table
from mlpilot.errors import ConflictError

__all__ = ["COMMANDS"]

_file = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command("promote")
@click.argument("name")
@click.option(
    "--force",
    is_flag=True,
    help="Promote a blue-green preview that has not passed `mlpilot deploy verify` (needs --reason; recorded).",
)
@reason_option
@json_option
@url_option
def promote(name: str, force: bool, reason: str, as_json: bool, url: str | None) -> None:
    """Give the candidate of NAME all traffic now (champion moves; the old version stays warm).

    A blue-green preview is promoted once its candidate passed `mlpilot deploy verify`, or with --force.
    """
    done(backend(url).promote(name, actor="cli", reason=reason, force=force), as_json)


@click.command("verify")
@click.argument("name")
@click.option(
    "--data-plane",
    "data_plane",
    required=True,
    metavar="URL",
    help="A model server following NAME (http://…): the smoke requests go to its preview route.",
)
@click.option(
    "--inputs",
    "inputs_file",
    type=_file,
    default=None,
    help="Rows to send, as callers send them (.json list or {'instances': [...]}, .jsonl, .csv); default: the "
    "version's input sample, else rows generated from its signature.",
)
@click.option("--requests", type=click.IntRange(1, 10_000), default=None, help="Default: the gate's smoke_requests.")
@click.option("--timeout", type=click.FloatRange(0, 300, min_open=True), default=10.0, show_default=True)
@reason_option
@json_option
@url_option
def verify(
    name: str,
    data_plane: str,
    inputs_file: Path | None,
    requests: int | None,
    timeout: float,
    reason: str,
    as_json: bool,
    url: str | None,
) -> None:
    """Verify the blue-green preview of NAME: smoke requests on its preview route (answers, output signature,
    latency budget). The result is recorded; a failure exits with code 4."""
    from mlpilot.deploy.files import read_records

    inputs = read_records(inputs_file, key="instances", field="inputs") if inputs_file is not None else None
    result = backend(url).verify_preview(
        name, data_plane, inputs=inputs, requests=requests, timeout=timeout, actor="cli", reason=reason
    )
    if as_json:
        print_json(result)
    else:
        verdict = "[green]passed[/green]" if result.passed else "[red]failed[/red]"
        figures = "" if result.p99_ms is None else f", p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms"
        console.print(
            f"v{result.version} preview {verdict}: {result.answered}/{result.requests} answered "
            f"(inputs: {result.inputs}{figures})"
        )
        print_table(None, ["check", "passed", "detail"], ([c.name, c.passed, c.detail] for c in result.checks))
    if not result.passed:
        failed = ", ".join(c.name for c in result.failures)
        raise ConflictError(f"v{result.version} failed preview verification ({failed}): not promotable")


@click.command("advance")
@click.argument("name")
@click.option("--latency-threshold-ms", type=click.FloatRange(0, min_open=True), default=None)
@reason_option
@json_option
@url_option
def advance(name: str, latency_threshold_ms: float | None, reason: str, as_json: bool, url: str | None) -> None:
    """Move the canary of NAME to its next step now (a promotion after the last one)."""
    info = backend(url).advance(name, actor="cli", reason=reason, latency_threshold_ms=latency_threshold_ms)
    done(info, as_json)


@click.command("release-standby")
@click.argument("name")
@json_option
@url_option
def release_standby(name: str, as_json: bool, url: str | None) -> None:
    """Unload the standby of NAME once its retention window has ended (the controller does it too)."""
    info = backend(url).release_standby(name, actor="cli")
    if info is not None:
        done(info, as_json)
    elif as_json:
        print_json(None)
    else:
        console.print("nothing to release: no standby, or its retention window has not ended")


@click.command("outcomes")
@click.argument("name")
@click.argument("file", type=_file)
@json_option
@url_option
def outcomes(name: str, file: Path, as_json: bool, url: str | None) -> None:
    """Post business outcomes of NAME's requests from FILE (.csv, .json, .jsonl): per record the assignment
    `key` or the `variant`, and a `value` (or a `prediction` and its `label`)."""
    from mlpilot.deploy.files import read_records
    from mlpilot.deploy.reports import parse_outcomes

    parsed = parse_outcomes(read_records(file, key="outcomes", field="outcomes"))
    counts = backend(url).record_outcomes(name, parsed)
    if as_json:
        print_json(counts)
        return
    console.print(f"recorded {sum(counts.values())} outcomes")
    print_table(None, ["variant", "outcomes"], sorted(counts.items()))


@click.command("history")
@click.argument("name")
@click.option("--after-revision", type=click.IntRange(0), default=0, show_default=True)
@click.option("-n", "--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@json_option
@url_option
def history(name: str, after_revision: int, limit: int, as_json: bool, url: str | None) -> None:
    """Revisions of NAME, oldest first: what each set, who set it, and why."""
    revisions = backend(url).history(name, after_revision=after_revision, limit=limit)
    if as_json:
        print_json(revisions)
    else:
        print_history(revisions)


def _event_detail(payload: dict[str, Any]) -> str:
    parts = []
    if payload.get("revision") is not None:
        parts.append(f"rev {payload['revision']}")
    if payload.get("state"):
        parts.append(str(payload["state"]))
    if payload.get("failed"):
        parts.append(f"v{payload.get('version')} failed: {', '.join(payload['failed'])}")
    verification = payload.get("verification")
    if isinstance(verification, dict):
        verdict = "passed" if verification.get("passed") else "failed"
        p99 = verification.get("p99_ms")
        parts.append(f"v{verification.get('version')} {verdict}" + (f", p99 {p99:.2f} ms" if p99 is not None else ""))
    for flag, text in (("forced", "forced"), ("gate", "gate skipped")):
        if payload.get(flag):
            parts.append(text)
    if payload.get("reason"):
        parts.append(f"why: {payload['reason']}")
    return "; ".join(parts)


@click.command("events")
@click.argument("name")
@click.option("--after-id", type=click.IntRange(0), default=0, show_default=True)
@click.option("-n", "--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@json_option
@url_option
def events(name: str, after_id: int, limit: int, as_json: bool, url: str | None) -> None:
    """The audit trail of NAME (deployment.* events), oldest first: who changed what, and why."""
    items = backend(url).events(name, after_id=after_id, limit=limit)
    if as_json:
        print_json(items)
        return
    print_table(
        None,
        ["id", "time", "event", "by", "detail"],
        ([e.id, fmt_time(e.time), e.kind, e.actor, _event_detail(e.payload)] for e in items),
        empty="no events in that range",
    )


@click.command("delete")
@click.argument("name")
@click.confirmation_option(prompt="Delete the deployment, its history and statistics?")
@reason_option
@url_option
def delete(name: str, reason: str, url: str | None) -> None:
    """Delete deployment NAME (the audit trail keeps a deployment.deleted event)."""
    backend(url).delete(name, actor="cli", reason=reason)
    console.print(f"deleted {name}")


COMMANDS = [promote, verify, advance, release_standby, outcomes, history, events, delete]
