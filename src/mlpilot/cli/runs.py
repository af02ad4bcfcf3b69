"""``mlpilot runs list|show``."""

from __future__ import annotations

import click

from mlpilot.cli.context import client, url_option
from mlpilot.cli.output import console, fmt_time, print_json, print_table


@click.group("runs")
def runs() -> None:
    """Inspect tracked runs."""


@runs.command("list")
@click.option("-e", "--experiment", multiple=True, help="Only runs of this experiment (repeatable).")
@click.option("-f", "--filter", "filter_", default=None, help='e.g. "metrics.auc > 0.9 and params.depth <= 8"')
@click.option("-o", "--order-by", multiple=True, help="e.g. 'metrics.auc DESC' (repeatable).")
@click.option("-n", "--max-results", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--page-token", default=None, help="Continue from a previous page.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@url_option
def list_(
    experiment: tuple[str, ...],
    filter_: str | None,
    order_by: tuple[str, ...],
    max_results: int,
    page_token: str | None,
    as_json: bool,
    url: str | None,
) -> None:
    """List runs, newest first, optionally filtered and ordered."""
    page = client(url).search_runs(filter_, list(experiment) or None, list(order_by) or None, max_results, page_token)
    if as_json:
        print_json(page)
        return
    metric_keys = sorted({k for r in page.runs for k in r.metrics})[:4]
    print_table(
        None,
        ["run", "experiment", "name", "status", "started", *metric_keys],
        (
            [r.info.id[:12], r.info.experiment, r.info.name, r.info.status.value, fmt_time(r.info.start_time)]
            + [_num(r.metrics.get(k)) for k in metric_keys]
            for r in page.runs
        ),
        empty="no runs match",
    )
    if page.next_page_token:
        console.print(f"[dim]more: --page-token {page.next_page_token}[/dim]")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@url_option
def show(run_id: str, as_json: bool, url: str | None) -> None:
    """Show one run: params, latest metrics, tags, datasets, artifacts."""
    run = client(url).get_run(run_id)
    if as_json:
        print_json(run)
        return
    info = run.info
    console.print(f"[bold]run {info.id}[/bold]  {info.name}  ({info.experiment})")
    console.print(f"status {info.status.value}   started {fmt_time(info.start_time)}   ended {fmt_time(info.end_time)}")
    if info.git_commit:
        console.print(f"code {info.git_commit[:12]}{' (dirty)' if info.git_dirty else ''}   by {info.user or '-'}")
    if info.parent_id:
        console.print(f"parent {info.parent_id}")
    print_table("params", ["key", "value"], sorted(run.params.items()), empty="no params")
    print_table(
        "metrics (latest)",
        ["key", "value"],
        ((k, _num(v)) for k, v in sorted(run.metrics.items())),
        empty="no metrics",
    )
    if run.tags:
        print_table("tags", ["key", "value"], sorted(run.tags.items()))
    if run.inputs:
        print_table(
            "datasets",
            ["name", "context", "rows", "digest"],
            ([d.dataset.name, d.context, d.dataset.num_rows, d.dataset.digest[:12]] for d in run.inputs),
        )
        for d in run.inputs:
            if d.dataset.leakage_summary is not None:
                console.print(
                    f"{d.dataset.name} ({d.context}) leakage: {d.dataset.leakage_summary}",
                    markup=False,
                    highlight=False,
                    soft_wrap=True,  # one line per dataset, whatever the terminal width: easy to grep
                )
    if run.artifacts:
        print_table("artifacts", ["path", "size", "sha256"], ([a.path, a.size, a.sha256[:12]] for a in run.artifacts))


COMMANDS = [runs]
