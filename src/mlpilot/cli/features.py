"""``mlpilot features plan|apply|history|materialize|get-online|parity``: the feature store from a shell.

Definitions come from ``features.py`` (or ``features.yaml``) in the current folder, or ``-f PATH``. The
registry is the one of ``--url`` (a server or database URL), else the configured server, else the embedded
store.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from mlpilot.cli.context import local_store, settings, url_option
from mlpilot.cli.output import console, err_console, fmt_time, print_json, print_table
from mlpilot.errors import InvalidInputError

__all__ = ["COMMANDS", "features"]

_DEFAULT_FILES = ("features.py", "features.yaml", "features.yml")


def _definitions(path: str | None) -> Any:
    from mlpilot.features import load_definitions

    if path is not None:
        return load_definitions(path)
    for name in _DEFAULT_FILES:
        if Path(name).is_file():
            return load_definitions(name)
    raise InvalidInputError(
        f"no definitions file: pass -f PATH or create one of {', '.join(_DEFAULT_FILES)} here", field="file"
    )


def _parity_definitions(path: str | None, url: str | None, project: str) -> Any:
    """The definitions file when there is one, else what is registered (what a model server looked up with)."""
    from mlpilot.features import Definitions

    if path is not None or any(Path(name).is_file() for name in _DEFAULT_FILES):
        return _definitions(path)
    registered = _backend(url, project).load_specs()
    if registered.version == 0:
        raise InvalidInputError(
            f"no definitions file here and none registered in project {project!r}: pass -f PATH", field="file"
        )
    return Definitions.from_specs(registered.specs)


def _close_later(close: Any) -> None:
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.call_on_close(close)


def _backend(url: str | None, project: str) -> Any:
    """The feature registry (and, remotely, online lookups) at ``url``, the configured server, or the local store."""
    from mlpilot.features import FeatureStoreService, RestFeatureStore

    s = settings()
    target = url or s.server_url
    if target is not None and target.startswith(("http://", "https://")):
        from mlpilot.remote.http import HttpTransport

        transport = HttpTransport(target, token=s.token.get_secret_value() if s.token else None)
        _close_later(transport.close)
        return RestFeatureStore(transport, project=project)
    if target is not None:
        from mlpilot.store import Store

        store = Store(target, busy_timeout=s.sqlite_busy_timeout)
        _close_later(store.close)
    else:
        store = local_store()
    service = FeatureStoreService(store, online=_online_url(None), project=project)
    _close_later(service.close)
    return service


def _online_url(url: str | None) -> str:
    from mlpilot.features.online import default_online_url

    return url or getattr(settings(), "features_online_url", None) or default_online_url(settings().home)


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInputError(f"--{name}: expected an ISO time such as 2024-05-01T12:00, got {value!r}") from exc
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _entity_rows(pairs: Sequence[str]) -> list[dict[str, int | str]]:
    """``-e cid=42`` per row; ``-e cid=42,sid=a`` for composite keys; digits are integers."""
    rows: list[dict[str, int | str]] = []
    for text in pairs:
        row: dict[str, int | str] = {}
        for part in text.split(","):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise InvalidInputError(f"--entity: expected key=value[,key=value], got {text!r}", field="entity")
            value = value.strip()
            row[key.strip()] = int(value) if value.lstrip("-").isdigit() else value
        rows.append(row)
    return rows


file_option = click.option(
    "-f", "--file", "path", default=None, metavar="PATH", help="Definitions file (default: ./features.py or .yaml)."
)
project_option = click.option("--project", default="default", show_default=True, help="Registry project.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group("features")
def features() -> None:
    """Register feature definitions, materialize them online, look features up, check serving parity."""


@features.command("plan")
@file_option
@project_option
@json_option
@url_option
def plan_(path: str | None, project: str, as_json: bool, url: str | None) -> None:
    """Validate the definitions and show what applying them would change."""
    from mlpilot.features import plan

    result = plan(_backend(url, project).load_specs(), _definitions(path))
    if as_json:
        print_json(result.to_dict())
        return
    _render_plan(result)


def _render_plan(result: Any) -> None:
    rows = [("+", c.kind, c.name, "") for c in result.added]
    rows += [("~", c.kind, c.name, ", ".join(c.fields)) for c in result.changed]
    rows += [("-", c.kind, c.name, "") for c in result.removed]
    print_table(
        f"plan against registry version {result.base_version}",
        ["", "kind", "name", "changed fields"],
        rows,
        empty=f"no changes ({len(result.unchanged)} definitions up to date)",
    )


@features.command("apply")
@file_option
@project_option
@click.option(
    "--expected-version", type=click.IntRange(0), default=None, help="Refuse if the registry moved past this version."
)
@json_option
@url_option
def apply(path: str | None, project: str, expected_version: int | None, as_json: bool, url: str | None) -> None:
    """Register the definitions as the next version, atomically (nothing is applied if any is bad)."""
    from mlpilot.features import apply_definitions

    backend = _backend(url, project)
    result = apply_definitions(backend, _definitions(path), expected_version=expected_version)
    version = backend.load_specs().version
    if as_json:
        print_json({**result.to_dict(), "version": version})
        return
    _render_plan(result)
    if result.has_changes:
        console.print(f"applied as version [bold]{version}[/bold] of project {project!r}")


@features.command("history")
@project_option
@click.option("-n", "--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@json_option
@url_option
def history(project: str, limit: int, as_json: bool, url: str | None) -> None:
    """List the applies of the registry, newest first."""
    items = _backend(url, project).history(limit=limit)
    if as_json:
        print_json(items)
        return
    print_table(
        f"feature registry {project!r}",
        ["version", "applied", "by", "added", "changed", "removed"],
        (
            [
                h.version,
                fmt_time(h.applied_at),
                h.actor,
                *(", ".join(h.changes.get(k, [])) or "-" for k in ("added", "changed", "removed")),
            ]
            for h in items
        ),
        empty="nothing applied yet: mlpilot features apply",
    )


@features.command("materialize")
@file_option
@click.option("-v", "--view", "views", multiple=True, help="Only this view (repeatable; default: all).")
@click.option("--incremental/--full", default=True, show_default=True, help="Start from the stored watermark.")
@click.option("--start", default=None, help="ISO time: first run (or --full) starts after it.")
@click.option("--end", default=None, help="ISO time: materialize up to it (default: now).")
@click.option("--online-url", default=None, metavar="URL", help="Online store (default: SQLite under MLPILOT_HOME).")
@click.option("--memory-limit", default=None, help="DuckDB memory limit, e.g. 2GB.")
@json_option
def materialize_(
    path: str | None,
    views: tuple[str, ...],
    incremental: bool,
    start: str | None,
    end: str | None,
    online_url: str | None,
    memory_limit: str | None,
    as_json: bool,
) -> None:
    """Write the latest feature values per entity to the online store."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from mlpilot.features import materialize, open_online_store

    defs = _definitions(path)
    chosen = [defs.view(name) for name in views] if views else [defs.view(name) for name in defs.views]
    if not chosen:
        raise InvalidInputError("no feature views to materialize", field="view")
    with (
        open_online_store(_online_url(online_url)) as store,
        Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,} rows"),
            TimeElapsedColumn(),
            console=err_console,
            disable=as_json,
            transient=False,
        ) as bar,
    ):
        tasks: dict[str, Any] = {}

        def progress(view: str, rows: int) -> None:
            if view not in tasks:
                tasks[view] = bar.add_task(view, total=None)
            bar.advance(tasks[view], rows)

        results = materialize(
            chosen,
            _time(start, "start"),
            _time(end, "end"),
            store=store,
            definitions=defs,
            incremental=incremental,
            memory_limit=memory_limit,
            progress=progress,
        )
        for view, task in tasks.items():
            bar.update(task, total=next(r.rows_written for r in results if r.view == view) or 1)
    if as_json:
        print_json(results)
        return
    print_table(
        "materialized",
        ["view", "rows written", "window start", "watermark"],
        ([r.view, f"{r.rows_written:,}", _us(r.start_us), _us(r.watermark)] for r in results),
    )


def _us(value: int | None) -> str:
    return "-" if value is None else fmt_time(value // 1000)


@features.command("get-online")
@click.option("-e", "--entity", "entities", multiple=True, required=True, help="key=value[,key=value]; one per row.")
@click.option("-F", "--features", "names", default=None, help="Comma-separated 'view' or 'view:feature' names.")
@click.option("-s", "--service", default=None, help="A feature service instead of --features.")
@click.option("--full-names", is_flag=True, help="Name columns view__feature.")
@file_option
@click.option("--online-url", default=None, metavar="URL", help="Online store, with -f (default: SQLite under home).")
@project_option
@json_option
@url_option
def get_online(
    entities: tuple[str, ...],
    names: str | None,
    service: str | None,
    full_names: bool,
    path: str | None,
    online_url: str | None,
    project: str,
    as_json: bool,
    url: str | None,
) -> None:
    """Look features up online for some entities (registered definitions, or -f's)."""
    rows = _entity_rows(entities)
    wanted = None if names is None else [n.strip() for n in names.split(",") if n.strip()]
    if (wanted is None) == (service is None):
        raise InvalidInputError("give either --features or --service", field="features")
    if path is not None:
        from mlpilot.features import get_online_features

        defs = _definitions(path)
        chosen: Any = defs.service(service) if service is not None else wanted
        columns = get_online_features(
            rows, chosen, store=_online_url(online_url), definitions=defs, full_names=full_names
        )
    else:
        columns = _backend(url, project).get_online_features(
            rows, wanted, feature_service=service, full_names=full_names
        )
    if as_json:
        print_json(columns)
        return
    names_out = list(columns)
    count = len(next(iter(columns.values()))) if columns else 0
    print_table(None, names_out, ([columns[n][i] for n in names_out] for i in range(count)))


@features.command("parity")
@click.option("--log", "logs", multiple=True, required=True, help="Lookup or prediction log: folder, glob or file.")
@file_option
@click.option("-F", "--features", "names", default=None, help="For a prediction log: the looked-up features.")
@click.option("-s", "--service", default=None, help="For a prediction log: the endpoint's feature service.")
@click.option("--model", default=None, help="Only this model's rows of a prediction log.")
@click.option("--tolerance", type=click.FloatRange(0), default=0.0, show_default=True, help="Float tolerance.")
@click.option("-n", "--examples", type=click.IntRange(0, 10_000), default=20, show_default=True)
@click.option("--check", is_flag=True, help="Exit with status 1 when any value mismatches.")
@project_option
@json_option
@url_option
def parity_(
    logs: tuple[str, ...],
    path: str | None,
    names: str | None,
    service: str | None,
    model: str | None,
    tolerance: float,
    examples: int,
    check: bool,
    project: str,
    as_json: bool,
    url: str | None,
) -> None:
    """Replay logged online lookups (a lookup log, or a model server's prediction log with -s SERVICE) through
    the offline join and report every mismatch. Definitions come from -f, ./features.py, else the registry."""
    from mlpilot.features import parity

    defs = _parity_definitions(path, url, project)
    chosen: Any = None
    if service is not None:
        chosen = defs.service(service)
    elif names is not None:
        chosen = [n.strip() for n in names.split(",") if n.strip()]
    status = console.status("replaying lookups through the offline join") if not as_json else nullcontext()
    with status:
        report = parity(list(logs), chosen, definitions=defs, model=model, tolerance=tolerance, max_examples=examples)
    if as_json:
        print_json(report.to_dict())
    else:
        console.print(report.render())
        print_table(
            "mismatches",
            ["request", "row", "time", "keys", "feature", "online", "offline"],
            (
                [
                    m.request_id,
                    m.row,
                    m.time.isoformat(),
                    ", ".join(f"{k}={v}" for k, v in m.keys.items()),
                    m.feature,
                    m.online,
                    m.offline,
                ]
                for m in report.examples
            ),
            empty="no mismatches: serving and training agree",
        )
    if check and not report.ok:
        raise click.exceptions.Exit(1)


COMMANDS = [features]
