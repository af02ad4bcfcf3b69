"""``mlpilot demo``: the whole loop on a laptop, step by step.

data → features (point-in-time training set, online store) → train and track → register and promote → serve by
customer id → monitor drift and accuracy by segment → retrain on the labelled traffic → gate and canary through
the control plane, judged on labels logged through monitoring → plant bad versions: one the gate refuses, one
that passes it and is rolled back automatically → parity and the audit trail.

Each step is a function taking the shared :class:`~mlpilot.demo.state.DemoState`; :data:`STEPS` lists them in
order. Steps that need the embedded store say so and skip when the demo runs against a remote server.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from mlpilot.client import Client
from mlpilot.demo.data import FEATURES, make_churn
from mlpilot.demo.featurestore import step_features
from mlpilot.demo.rollout import step_canary, step_retrain, step_rollback
from mlpilot.demo.serve import predictions_url, step_monitor, step_serve
from mlpilot.demo.state import ENDPOINT, EXPERIMENT, MODEL_NAME, SERVICE, DemoState, progress
from mlpilot.demo.train import evaluate, make_candidates
from mlpilot.errors import NotFoundError

__all__ = ["ENDPOINT", "EXPERIMENT", "MODEL_NAME", "STEPS", "DemoState", "run_demo"]


def step_data(state: DemoState) -> None:
    today = np.datetime64(datetime.now(UTC).date(), "D")
    # A year of sign-ups ending a month ago, so that every late correction has landed by now.
    frame = make_churn(state.rows, seed=state.seed, start=today - 400, span_days=365)
    state.data["customers"] = frame
    state.console.print(
        f"generated [bold]{len(frame):,}[/bold] customers who signed up over a year (churn rate "
        f"{frame['churned'].mean():.1%}), with region, plan, contract and usage"
    )


def step_train(state: DemoState) -> None:
    train, test = state.data["train"], state.data["test"]
    candidates = make_candidates(state.seed)
    with progress(state.console) as bar:
        task = bar.add_task("training", total=len(candidates))
        for cand in candidates:
            bar.update(task, description=f"training {cand.name}")
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
                    description=f"{cand.name} on the {SERVICE} feature service",
                )
            state.runs.append({"run": run.id, "name": cand.name, "metrics": metrics, "version": version.version})
            state.versions.append(version)
            bar.console.print(
                f"  {cand.name}: AUC {metrics['auc']:.3f}, run {run.id[:12]}, registered "
                f"{MODEL_NAME} version {version.version} ({version.flavor}, sha256 {version.artifact_sha256[:12]})"
            )
            bar.advance(task)


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


def step_parity(state: DemoState) -> None:
    from mlpilot.features import parity

    if state.features is None:
        state.skip("parity")
        return
    logged = _logged_since(predictions_url(state), state.data["started_at"])
    if logged is None:
        state.console.print("parity skipped: this run logged no prediction")
        return
    with state.console.status("replaying the served lookups through the offline join"):
        report = parity(
            logged,
            state.features.service,
            definitions=state.features.definitions,
            model=MODEL_NAME,
        )
    state.data["parity"] = report
    color = "green" if report.ok else "red"
    state.console.print(f"training/serving parity: [{color}]{report.render()}[/{color}]")
    state.console.print(
        "  every value the server looked up online equals what the point-in-time join gives for that customer "
        "at that request's time: no training/serving skew"
        if report.ok
        else "  served values differ from the offline join: see `mlpilot features parity` for examples"
    )


def _logged_since(folder: Path, since: datetime) -> Any:
    """This run's rows of the model's prediction log (an earlier demo in the same home logged its own)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    parts = []
    for file in sorted((folder / f"model={MODEL_NAME}").rglob("*.parquet")):
        table = pq.read_table(file)
        table = table.filter(pc.greater_equal(table.column("time"), pa.scalar(since, pa.timestamp("ms", tz="UTC"))))
        if table.num_rows:
            parts.append(table)
    return pa.concat_tables(parts, promote_options="permissive") if parts else None


def _history_table(state: DemoState) -> Table | None:
    try:
        history = state.client.deployments.history(ENDPOINT)
    except NotFoundError:  # no deployment: the rollout steps were skipped
        return None
    table = Table(title=f"deployment {ENDPOINT}: history (the audit trail: who, what, why)", header_style="bold")
    for col in ("rev", "time", "who", "what", "traffic", "why"):
        table.add_column(col)
    for entry in history:
        live = [v for v in entry.spec.variants if v.role in ("primary", "canary")]
        traffic = " · ".join(f"v{v.version} {v.weight:g}%" for v in sorted(live, key=lambda v: v.version))
        when = datetime.fromtimestamp(entry.time / 1000).strftime("%H:%M:%S")
        table.add_row(str(entry.revision), when, entry.actor, entry.action, traffic, entry.reason or "-")
    return table


def step_summary(state: DemoState) -> None:
    table = Table(title="tracked runs", header_style="bold")
    for col in ("run", "model", "AUC", "accuracy", "log loss", "evaluated on", "version"):
        table.add_column(col)
    for r in state.runs:
        m = r["metrics"]
        table.add_row(
            r["run"][:12],
            r["name"],
            f"{m['auc']:.3f}",
            f"{m['accuracy']:.3f}",
            f"{m['log_loss']:.3f}",
            r.get("evaluated_on", "latest sign-ups"),
            str(r["version"]),
        )
    state.console.print(table)
    history = _history_table(state)
    if history is not None:
        state.console.print(history)
    moves = [
        f"v{e.payload['version']} ({e.actor}, {datetime.fromtimestamp(e.time / 1000):%H:%M:%S})"
        for e in state.client.registry.model_history(MODEL_NAME, limit=1000)
        if e.kind == "model.alias_set" and e.payload.get("alias") == "champion"
    ]
    state.console.print(f"{MODEL_NAME}@champion moved: {' → '.join(moves)}")
    lines = [
        f"  mlpilot runs list -e {EXPERIMENT} -o 'metrics.auc DESC'",
        f"  mlpilot models show {MODEL_NAME}     # versions, aliases and their audit trail",
    ]
    if history is not None:
        lines.append(f"  mlpilot deploy show {ENDPOINT}     # spec, variants and history")
    if state.features is not None:
        file, log = state.features.file, predictions_url(state)
        lines += [
            f"  mlpilot features plan -f {file}",
            f"  mlpilot features parity -f {file} --log {log} -s {SERVICE} --model {MODEL_NAME}",
        ]
    lines += [
        f"  mlpilot monitor check {MODEL_NAME} --html report.html",
        "  mlpilot server          # REST API + OpenAPI at http://127.0.0.1:5080/docs",
    ]
    state.console.print("\nnext:\n" + "\n".join(lines) + f"\nstore: {state.client.url}")


STEPS: list[tuple[str, Callable[[DemoState], None]]] = [
    ("data", step_data),
    ("features: definitions, point-in-time training set, online store", step_features),
    ("train and track", step_train),
    ("register and promote", step_promote),
    ("serve by customer id", step_serve),
    ("monitor", step_monitor),
    ("retrain on the labelled traffic", step_retrain),
    ("gate and canary through the control plane", step_canary),
    ("bad versions: refused by the gate, rolled back by the controller", step_rollback),
    ("training/serving parity", step_parity),
    ("summary", step_summary),
]


@contextmanager
def _narrated() -> Iterator[None]:
    """The demo narrates what the servers do; their own warnings (every failed request of the planted broken
    version, for one) would drown the story. Silenced only when nobody configured logging."""
    library = logging.getLogger("mlpilot")
    if logging.getLogger().handlers or library.handlers:
        yield
        return
    quiet = logging.NullHandler()
    library.addHandler(quiet)
    try:
        yield
    finally:
        library.removeHandler(quiet)


def run_demo(client: Client, *, rows: int = 20_000, seed: int = 0, console: Console | None = None) -> DemoState:
    """Run every step of the tour against ``client`` and return what it produced."""
    state = DemoState(client=client, console=console or Console(), rows=rows, seed=seed)
    state.data["started_at"] = datetime.now(UTC)
    timings: dict[str, float] = state.data.setdefault("timings", {})
    with _narrated():
        _run_steps(state, timings)
    return state


def _run_steps(state: DemoState, timings: dict[str, float]) -> None:
    try:
        for i, (title, step) in enumerate(STEPS, 1):
            state.console.rule(f"[bold]{i}. {title}")
            started = time.perf_counter()
            step(state)
            timings[title] = time.perf_counter() - started
    finally:
        rollout = state.data.pop("rollout", None)
        if rollout is not None:  # a step failed mid-rollout: stop the planes and the callers
            rollout.close()
