"""``mlpilot monitor check|results|configure|labels|profile`` and ``mlpilot monitor alerts list|set|rm|evaluate``.

Against the embedded store (and ``$MLPILOT_HOME/predictions``) by default, or a server with ``--url``.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from mlpilot.cli.context import settings, url_option
from mlpilot.cli.output import console, fmt_time, print_json, print_table
from mlpilot.errors import InvalidInputError

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def _backend(url: str | None) -> Any:
    """A local :class:`~mlpilot.monitor.Monitor` or a :class:`~mlpilot.remote.monitor.RestMonitor`."""
    s = settings()
    target = url or s.server_url
    ctx = click.get_current_context()
    if target is not None and target.startswith(("http://", "https://")):
        from mlpilot.remote.http import HttpTransport
        from mlpilot.remote.monitor import RestMonitor

        transport = HttpTransport(target, token=s.token.get_secret_value() if s.token else None)
        ctx.call_on_close(transport.close)
        return RestMonitor(transport)
    from mlpilot.config import load_settings
    from mlpilot.monitor.service import Monitor
    from mlpilot.registry import RegistryService, load_model

    local = load_settings(db_url=target) if target else s
    monitor = Monitor.from_settings(local)
    registry = RegistryService(monitor.store)
    monitor.model_loader = lambda name, version: load_model(f"models:/{name}/{version}", registry, monitor.artifacts)
    ctx.call_on_close(monitor.close)
    return monitor


def _time(value: str | None, name: str) -> int | None:
    """``30m``/``2h``/``7d`` ago, an ISO 8601 time, or epoch milliseconds."""
    if value is None:
        return None
    text = value.strip()
    found = _DURATION.match(text)
    if found:
        now = int(datetime.now(tz=UTC).timestamp() * 1000)
        return now - int(float(found.group(1)) * _UNITS[found.group(2)])
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInputError(
            f"--{name}: expected a duration like 30m, 2h, 7d, an ISO 8601 time or epoch ms, got {value!r}",
            field=name,
        ) from exc
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def _print_summary(s: Any) -> None:
    window = f"{fmt_time(s.window_start)} → {fmt_time(s.window_end)}" if s.window_start else "empty window"
    console.print(
        f"[bold]{s.endpoint}[/bold] (model {s.model} v{s.version})  {s.rows:,} rows, {s.labeled_rows:,} labeled  "
        f"{window}"
    )
    drifted = ", ".join(s.drifted_features) or "none"
    console.print(f"drifted features: [{'red' if s.drifted_features else 'green'}]{drifted}[/]")
    rows = [
        [name, f.test, _num(f.effect_size), _num(f.p_value), _num(f.q_value), "DRIFT" if f.drifted else ""]
        for name, f in s.features.items()
    ]
    if s.prediction is not None:
        p = s.prediction
        rows.append(
            [
                "(prediction)",
                p.test,
                _num(p.effect_size),
                _num(p.p_value),
                _num(p.q_value),
                "DRIFT" if p.drifted else "",
            ]
        )
    if s.multivariate is not None:
        m = s.multivariate
        rows.append(
            [
                "(joint, PCA)",
                m.test,
                _num(m.effect_size),
                _num(m.p_value),
                _num(m.q_value),
                "DRIFT" if m.drifted else "",
            ]
        )
    print_table(None, ["feature", "test", "effect", "p", "q", ""], rows, empty="nothing was tested")
    if s.performance:
        metrics = sorted({m for values in s.performance.values() for m in values})
        perf_rows = [
            [segment or "all", f"{s.performance_rows.get(segment, 0):,}", *(_num(v.get(m)) for m in metrics)]
            for segment, v in s.performance.items()
        ]
        print_table("performance", ["segment", "rows", *metrics], perf_rows)
    if s.worst_segment_description:
        console.print(f"[bold red]worst segment:[/bold red] {s.worst_segment_description}")
    for line in s.findings:
        if line != s.worst_segment_description:
            console.print(f"· {line}")
    for note in s.notes:
        console.print(f"[dim]note: {note}[/dim]")


@click.group("monitor")
def monitor() -> None:
    """Drift, performance by segment, late labels and alerts for served endpoints."""


@monitor.command("check")
@click.argument("endpoint")
@click.option("--last", "last_rows", type=click.IntRange(1, 10_000_000), default=None, help="Newest N rows.")
@click.option("--since", default=None, help="Start: 30m, 2h, 7d ago, an ISO 8601 time, or epoch ms.")
@click.option("--until", default=None, help="End (exclusive), same forms as --since.")
@click.option("--version", "model_version", type=click.IntRange(1), default=None, help="Model version.")
@click.option("--html", "html", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write the report.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@url_option
def check(
    endpoint: str,
    last_rows: int | None,
    since: str | None,
    until: str | None,
    model_version: int | None,
    html: Path | None,
    as_json: bool,
    url: str | None,
) -> None:
    """Check a window of ENDPOINT's served traffic against its model version's reference; store the result."""
    from mlpilot.monitor.windows import WindowSpec

    backend = _backend(url)
    window = None
    if any(v is not None for v in (last_rows, since, until, model_version)):
        window = WindowSpec(last_rows, _time(since, "since"), _time(until, "until"), model_version)
    summary = backend.run_check(endpoint, window, actor="cli")
    if html is not None:
        from mlpilot.monitor.report import DriftReport

        DriftReport.from_dict(backend.check_report(endpoint, summary.id)).to_html(html)
    if as_json:
        data = summary.model_dump(mode="json")
        if html is not None:
            data["html"] = str(html)
        print_json(data)
        return
    _print_summary(summary)
    if html is not None:
        console.print(f"report: {html}")


@monitor.command("results")
@click.argument("endpoint", required=False)
@click.option("-n", "--max-results", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@url_option
def results(endpoint: str | None, max_results: int, as_json: bool, url: str | None) -> None:
    """The latest result of every endpoint, or the recent results of ENDPOINT."""
    backend = _backend(url)
    items = backend.list_checks(endpoint, limit=max_results) if endpoint else backend.latest_checks()
    if as_json:
        print_json([s.model_dump(mode="json") for s in items])
        return
    print_table(
        None,
        ["id", "endpoint", "version", "checked", "rows", "labeled", "drifted", "worst segment"],
        (
            [
                s.id,
                s.endpoint,
                s.version,
                fmt_time(s.time),
                f"{s.rows:,}",
                f"{s.labeled_rows:,}",
                ", ".join(s.drifted_features) or "-",
                s.worst_segment or "-",
            ]
            for s in items
        ),
        empty="no monitoring results yet: mlpilot monitor check ENDPOINT",
    )


@monitor.command("configure")
@click.argument("endpoint")
@click.option("--model", default=None, help="Registered model behind ENDPOINT (default: the same name).")
@click.option("--segments", default=None, help="Comma-separated segment fields, e.g. region,plan.")
@click.option("--prediction", default=None, help="Output column holding the prediction.")
@click.option("--score", default=None, help="Positive-class probability column, e.g. probabilities_1.")
@click.option("--label", default=None, help="Label column name (default 'label').")
@click.option("--task", type=click.Choice(["classification", "regression"]), default=None)
@click.option("--window-rows", type=click.IntRange(1), default=None, help="Rows per scheduled check.")
@click.option("--window-minutes", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None)
@url_option
def configure(endpoint: str, url: str | None, alpha: float | None, segments: str | None, **options: Any) -> None:
    """Declare how ENDPOINT is monitored (unset options keep their current values)."""
    from mlpilot.monitor.entities import EndpointConfig

    backend = _backend(url)
    current = backend.endpoint_config(endpoint).model_dump()
    updates = {k: v for k, v in options.items() if v is not None}
    if segments is not None:
        updates["segments"] = [s.strip() for s in segments.split(",") if s.strip()]
    if alpha is not None:
        updates["drift"] = {**current.get("drift", {}), "alpha": alpha}
    try:
        config = EndpointConfig.model_validate({**current, **updates})
    except ValueError as exc:
        raise InvalidInputError(f"{endpoint}: {exc}", field="config") from exc
    saved = backend.configure_endpoint(endpoint, config, actor="cli")
    console.print(json.dumps(saved.model_dump(mode="json", exclude_defaults=True)) or "{}")


@monitor.command("labels")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--endpoint", default=None, help="Only look up predictions of this endpoint.")
@url_option
def labels(path: Path, endpoint: str | None, url: str | None) -> None:
    """Send late labels from a CSV, JSON Lines or Parquet file with columns request_id[,row],label or
    entity_id,time,label. Every label must match a logged prediction or none is stored."""
    from mlpilot.monitor.labels import LabelBatch

    rows = _read_rows(path)
    if not rows:
        raise InvalidInputError(f"{path}: no labels in the file", field="path")
    try:
        batch = LabelBatch.model_validate({"labels": rows, "endpoint": endpoint})
    except ValueError as exc:
        raise InvalidInputError(f"{path}: {exc}", field="labels") from exc
    receipt = _backend(url).log_labels(batch, actor="cli")
    console.print(
        f"stored {receipt.stored:,} label(s): " + ", ".join(f"{k} {v:,}" for k, v in receipt.endpoints.items())
    )


def _read_rows(path: Path) -> list[dict[str, Any]]:
    import pyarrow as pa

    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        elif suffix in (".jsonl", ".json", ".ndjson"):
            import pyarrow.json as pj

            table = pj.read_json(path)
        else:
            import pyarrow.csv as pcsv

            # Labels and ids stay text unless they look like numbers; a CSV cannot tell "1" from 1 otherwise.
            text_ids = {"request_id": pa.string(), "entity_id": pa.string()}
            table = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(column_types=text_ids))
    except (pa.ArrowException, OSError) as exc:
        raise InvalidInputError(f"{path}: cannot read labels: {exc}", field="path") from exc
    known = {"request_id", "row", "entity_id", "time", "label"}
    unknown = sorted(set(table.column_names) - known)
    if unknown or "label" not in table.column_names:
        raise InvalidInputError(
            f"{path}: expected columns request_id[,row],label or entity_id,time,label; got {table.column_names}",
            field="path",
        )
    if "time" in table.column_names and pa.types.is_timestamp(table.column("time").type):
        millis = table.column("time").cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64())
        table = table.set_column(table.column_names.index("time"), "time", millis)
    return [{k: v for k, v in row.items() if v is not None} for row in table.to_pylist()]


@monitor.command("profile")
@click.argument("model")
@click.argument("version", type=click.IntRange(1))
@click.option("--endpoint", default=None, help="Shape the profile by this endpoint's settings.")
@url_option
def profile_cmd(model: str, version: int, endpoint: str | None, url: str | None) -> None:
    """Compute (or show) the reference profile of MODEL VERSION from its stored training sample."""
    info = _backend(url).ensure_profile(model, version, endpoint=endpoint)
    state = "computed" if info.computed else "stored"
    console.print(f"{info.subject}: {state} profile of {info.rows:,} rows, sha256 {info.sha256}")
    for note in info.params.get("notes", []):
        console.print(f"[dim]note: {note}[/dim]")


@monitor.group("alerts")
def alerts() -> None:
    """Alert rules on drift, performance and serving health."""


@alerts.command("list")
@click.option("--endpoint", default=None)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@url_option
def alerts_list(endpoint: str | None, as_json: bool, url: str | None) -> None:
    """List rules and their state."""
    items = _backend(url).alerts.list_rules(endpoint)
    if as_json:
        print_json([i.model_dump(mode="json") for i in items])
        return
    print_table(
        None,
        ["name", "endpoint", "kind", "condition", "state", "value", "fired", "webhook"],
        (
            [
                i.rule.name,
                i.rule.endpoint,
                i.rule.kind,
                _condition(i.rule),
                i.state,
                _num(i.value),
                fmt_time(i.fired_at),
                i.rule.webhook_url or "-",
            ]
            for i in items
        ),
        empty="no alert rules: mlpilot monitor alerts set NAME --endpoint E --kind K --threshold T",
    )


def _condition(rule: Any) -> str:
    where = rule.segment or rule.feature
    return f"{rule.metric or rule.kind}{f'[{where}]' if where else ''} {rule.op} {rule.threshold:g}"


@alerts.command("set")
@click.argument("name")
@click.option("--endpoint", required=True)
@click.option("--kind", type=click.Choice(["drift", "performance", "latency_p99", "error_rate"]), required=True)
@click.option("--threshold", type=float, required=True)
@click.option("--op", type=click.Choice([">", ">=", "<", "<="]), default=None, help="Default by kind.")
@click.option("--metric", default=None, help="accuracy, f1, mae, ... or drifted_features / drift_score.")
@click.option("--feature", default=None)
@click.option("--segment", default=None, help="e.g. region=EU")
@click.option("--min-rows", type=click.IntRange(0), default=100, show_default=True)
@click.option("--metrics-url", default=None, help="The model server's /metrics (latency and error rules).")
@click.option("--webhook", "webhook_url", default=None, help="URL POSTed when the rule fires or resolves.")
@click.option("--cooldown", "cooldown_s", type=click.FloatRange(0), default=300.0, show_default=True)
@click.option("--consecutive", type=click.IntRange(1), default=1, show_default=True)
@url_option
def alerts_set(name: str, url: str | None, **fields: Any) -> None:
    """Create or replace the rule NAME."""
    from mlpilot.monitor.entities import AlertRule

    try:
        rule = AlertRule(name=name, **fields)
    except ValueError as exc:
        raise InvalidInputError(f"alert {name}: {exc}", field="rule") from exc
    info = _backend(url).alerts.set_rule(rule, actor="cli")
    console.print(f"alert {info.rule.name}: {info.rule.kind} {info.rule.op} {info.rule.threshold:g} ({info.state})")


@alerts.command("rm")
@click.argument("name")
@url_option
def alerts_rm(name: str, url: str | None) -> None:
    """Delete the rule NAME."""
    _backend(url).alerts.delete_rule(name, actor="cli")
    console.print(f"removed alert {name}")


@alerts.command("evaluate")
@click.option("--no-checks", is_flag=True, help="Use the latest stored results instead of checking now.")
@url_option
def alerts_evaluate(no_checks: bool, url: str | None) -> None:
    """Evaluate every rule now, as the server's scheduler does each interval."""
    transitions = _backend(url).alerts.evaluate(run_checks=not no_checks)
    if not transitions:
        console.print("no alert fired or resolved")
    for t in transitions:
        delivered = "" if t.delivered is None else f" (webhook {'delivered' if t.delivered else 'FAILED'})"
        console.print(f"{t.event} {t.alert}: {t.description}{delivered}")


COMMANDS = [monitor]
