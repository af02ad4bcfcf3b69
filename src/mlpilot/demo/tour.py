"""``mlpilot demo``: the loop on a laptop, step by step. Later steps (serve, canary, drift, retrain) plug in here.

Each step is a function taking the shared :class:`DemoState`; :data:`STEPS` lists them in order.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from mlpilot.client import Client
from mlpilot.demo.data import FEATURES, make_churn
from mlpilot.demo.train import evaluate, make_candidates

__all__ = ["STEPS", "DemoState", "run_demo"]

MODEL_NAME = "churn"
EXPERIMENT = "churn-demo"


@dataclass
class DemoState:
    client: Client
    console: Console
    rows: int
    seed: int
    data: dict[str, Any] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    versions: list[Any] = field(default_factory=list)
    champion: Any = None


def step_data(state: DemoState) -> None:
    frame = make_churn(state.rows, seed=state.seed)
    frame = frame.sort_values("signup_time").reset_index(drop=True)
    cut = int(len(frame) * 0.8)  # train on the past, evaluate on the most recent customers
    state.data["train"], state.data["test"] = frame.iloc[:cut], frame.iloc[cut:]
    state.console.print(
        f"generated [bold]{len(frame):,}[/bold] customers (churn rate {frame['churned'].mean():.1%}); "
        f"train {cut:,} / test {len(frame) - cut:,} split by signup time"
    )


def step_train(state: DemoState) -> None:
    train, test = state.data["train"], state.data["test"]
    candidates = make_candidates(state.seed)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=state.console,
        transient=True,
    ) as progress:
        task = progress.add_task("training", total=len(candidates))
        for cand in candidates:
            progress.update(task, description=f"training {cand.name}")
            with state.client.start_run(EXPERIMENT, name=cand.name, tags={"team": "growth"}) as run:
                run.log_params({"model": cand.name, **cand.params})
                run.log_dataset(train, name="churn-train", context="train")
                run.log_dataset(test, name="churn-test", context="eval")
                model = cand.build().fit(train[FEATURES], train["churned"])
                clf = model.named_steps["clf"]
                for step, score in enumerate(getattr(clf, "train_score_", [])):
                    run.log_metric("train_loss", -float(score), step=step)  # sklearn stores -loss
                metrics = evaluate(model, test)
                run.log_metrics(metrics)
                with tempfile.TemporaryDirectory() as tmp:
                    report = Path(tmp) / "segment_auc.csv"
                    report.write_text(
                        "segment,auc\n"
                        + "".join(
                            f"{k.removeprefix('auc_region_')},{v:.4f}\n"
                            for k, v in metrics.items()
                            if k.startswith("auc_region_")
                        )
                    )
                    run.log_artifact(report, name="reports/segment_auc.csv")
                version = state.client.log_model(
                    model,
                    MODEL_NAME,
                    input_example=test[FEATURES].head(5),
                    training_data=train[FEATURES],
                    run=run,
                    metrics={k: v for k, v in metrics.items() if not k.startswith("auc_region_")},
                    description=f"{cand.name} on churn features",
                )
            state.runs.append({"run": run.id, "name": cand.name, "metrics": metrics, "version": version.version})
            state.versions.append(version)
            progress.console.print(
                f"  {cand.name}: AUC {metrics['auc']:.3f}, run {run.id[:12]}, registered "
                f"{MODEL_NAME} version {version.version} ({version.flavor}, sha256 {version.artifact_sha256[:12]})"
            )
            progress.advance(task)


def step_promote(state: DemoState) -> None:
    best = max(state.runs, key=lambda r: r["metrics"]["auc"])
    for r in state.runs:
        alias = "champion" if r is best else "challenger"
        state.client.set_alias(MODEL_NAME, alias, r["version"])
    state.champion = state.client.get_model_version(MODEL_NAME, "champion")
    predictor = state.client.load_model(f"models:/{MODEL_NAME}@champion")
    sample = state.data["test"][FEATURES].head(3)
    proba = predictor.predict_proba(sample)[:, 1]
    state.console.print(
        f"[bold]{MODEL_NAME}@champion[/bold] → version {state.champion.version} ({best['name']}, "
        f"AUC {best['metrics']['auc']:.3f}); reloaded from the registry (hash verified): "
        f"churn probabilities {', '.join(f'{p:.2f}' for p in proba)}"
    )


def step_serve(state: DemoState) -> None:
    try:
        from mlpilot.serving import RegistrySource
        from mlpilot.serving.testing import drive, serve_in_thread
    except ImportError as exc:  # the serve extra brings uvicorn's fast loop and orjson
        from mlpilot.errors import MissingDependencyError

        raise MissingDependencyError(exc.name or "uvicorn", "serve") from exc
    rows = state.data["test"][FEATURES].head(500).to_dict(orient="records")
    source = RegistrySource(state.client.registry, state.client.artifacts)
    log_url = state.client.settings.home.resolve() / "predictions"
    with serve_in_thread(source, [f"{MODEL_NAME}@champion"], log_url=log_url) as running:
        state.console.print(
            f"serving [bold]{MODEL_NAME}@champion[/bold] at {running.url} (Open Inference Protocol "
            f"v2, /invocations, /v1/models/{MODEL_NAME}:predict, /metrics)"
        )
        for concurrency, count in ((1, 200), (8, 1_000)):
            report = drive(running.url, MODEL_NAME, rows, requests=count, concurrency=concurrency)
            state.data[f"serve_c{concurrency}"] = report
            state.console.print(
                f"  {count:,} one-row requests at concurrency {concurrency}: {report.requests_per_second:,.0f} req/s, "
                f"p50 {report.p50_ms:.1f} ms, p99 {report.p99_ms:.1f} ms, errors {report.errors}"
            )
    state.console.print(f"prediction log (Parquet): {log_url}")


def step_monitor(state: DemoState) -> None:
    from mlpilot.demo.data import make_churn
    from mlpilot.monitor import EndpointConfig, LabelBatch, WindowSpec
    from mlpilot.monitor.service import Monitor
    from mlpilot.serving import RegistrySource
    from mlpilot.serving.testing import serve_in_thread

    monitor = state.client.monitor
    if not isinstance(monitor, Monitor):
        # The demo's model server writes its prediction log on this machine, out of a remote server's reach.
        state.console.print("monitoring step skipped: it needs the embedded store (run the demo without --url)")
        return
    monitor.configure_endpoint(MODEL_NAME, EndpointConfig(segments=["region", "plan"]))
    # A month later: charges rose for EU customers on the basic plan, and a competitor's offer makes them churn.
    shift = {"region": "EU", "plan": "basic", "monthly_charges": 25.0, "churn_boost": 2.0}
    traffic = make_churn(state.rows // 4, seed=state.seed + 7, shift=shift)
    rows = traffic[FEATURES].to_dict(orient="records")
    source = RegistrySource(state.client.registry, state.client.artifacts)
    log_url = state.client.settings.home.resolve() / "predictions"
    request_ids: list[str] = []
    with serve_in_thread(source, [f"{MODEL_NAME}@champion"], log_url=log_url) as running:
        serving = running.client()
        try:
            with Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TimeElapsedColumn(),
                console=state.console,
                transient=True,
            ) as progress:
                task = progress.add_task("sending shifted traffic", total=len(rows))
                for row, cid, region, plan in zip(
                    rows, traffic["customer_id"], traffic["region"], traffic["plan"], strict=True
                ):
                    answer = serving.predict(
                        MODEL_NAME, [row], entity_id=str(cid), segments={"region": region, "plan": plan}
                    )
                    request_ids.append(answer.request_id)
                    progress.advance(task)
        finally:
            serving.close()
        if running.server.predlog is not None:
            running.server.predlog.flush()
    state.console.print(f"sent {len(rows):,} requests with region and plan; EU/basic customers drifted")
    # Ground truth arrives later, keyed by the request ids the server answered with.
    labels = LabelBatch.from_request_ids(request_ids, traffic["churned"].tolist(), endpoint=MODEL_NAME)
    report_path = state.client.settings.home.resolve() / "reports" / "churn-monitoring.html"
    report_path.parent.mkdir(parents=True, exist_ok=True)
    result = monitor.check(MODEL_NAME, WindowSpec(last_rows=len(rows)), labels=labels, html=report_path)
    state.data["monitor"] = result
    summary = result.summary
    state.console.print(
        f"labels joined for {summary.labeled_rows:,} of {summary.rows:,} predictions; "
        f"drifted features: [bold]{', '.join(summary.drifted_features) or 'none'}[/bold]"
    )
    state.console.print(f"segment whose performance fell most: [bold]{summary.worst_segment or '-'}[/bold]")
    if summary.worst_segment_description:
        state.console.print(f"  {summary.worst_segment_description}")
    state.console.print(f"HTML report: {report_path}")


def step_summary(state: DemoState) -> None:
    table = Table(title="tracked runs", header_style="bold")
    for col in ("run", "model", "AUC", "accuracy", "log loss", "version"):
        table.add_column(col)
    for r in state.runs:
        m = r["metrics"]
        table.add_row(
            r["run"][:12],
            r["name"],
            f"{m['auc']:.3f}",
            f"{m['accuracy']:.3f}",
            f"{m['log_loss']:.3f}",
            str(r["version"]),
        )
    state.console.print(table)
    state.console.print(
        "\nnext:\n"
        f"  mlpilot runs list -e {EXPERIMENT} -o 'metrics.auc DESC'\n"
        f"  mlpilot runs list -f \"metrics.auc > 0.7 and params.model = 'gradient_boosting'\"\n"
        f"  mlpilot models versions {MODEL_NAME}\n"
        f"  mlpilot models show {MODEL_NAME}\n"
        f"  mlpilot serve {MODEL_NAME}@champion   # the model server on http://127.0.0.1:8080\n"
        "  mlpilot server          # REST API + OpenAPI at http://127.0.0.1:5080/docs\n"
        f"store: {state.client.url}"
    )


STEPS: list[tuple[str, Callable[[DemoState], None]]] = [
    ("data", step_data),
    ("train and track", step_train),
    ("register and promote", step_promote),
    ("serve", step_serve),
    ("monitor", step_monitor),
    ("summary", step_summary),
]


def run_demo(client: Client, *, rows: int = 20_000, seed: int = 0, console: Console | None = None) -> DemoState:
    """Run every step of the tour against ``client`` and return what it produced."""
    state = DemoState(client=client, console=console or Console(), rows=rows, seed=seed)
    for i, (title, step) in enumerate(STEPS, 1):
        state.console.rule(f"[bold]{i}. {title}")
        step(state)
    return state
