"""The demo end to end on a fresh home: features, training, serving by customer id, monitoring, the retrained
canary promoted by the controller, the planted broken version rolled back, parity and the audit trail."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from rich.console import Console

import mlpilot
from mlpilot.client import Client
from mlpilot.demo.data import FEATURES, NUMERIC
from mlpilot.demo.state import DemoState
from mlpilot.demo.tour import ENDPOINT, EXPERIMENT, MODEL_NAME, run_demo

pytest.importorskip("sklearn")
pytest.importorskip("uvicorn")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from mlpilot.config import load_settings

    out = io.StringIO()
    client = Client(settings=load_settings(home=str(tmp_path_factory.mktemp("demo-home"))))
    state = run_demo(client, rows=6_000, seed=1, console=Console(file=out, width=120))
    yield state, out.getvalue()
    client.close()


def test_the_training_set_is_point_in_time_and_its_report_counts_every_late_correction(demo: Any) -> None:
    state: DemoState = demo[0]
    tables = state.data["tables"]
    training = state.data["training_set"]
    report = training.report
    assert report.entity_rows == len(tables.labels)
    assert report.excluded_by_availability == len(tables.corrected) > 0
    assert report.views["churn_usage"].matched == report.views["churn_profile"].matched == len(tables.labels)
    # No leaked value beyond the report: every training row holds the snapshot as first loaded, never the
    # correction backfilled after the customer was scored.
    customers = state.data["customers"].set_index("customer_id")
    joined = training.data.set_index("customer_id").loc[customers.index]
    for column in NUMERIC:
        np.testing.assert_array_equal(joined[column].to_numpy(), customers[column].to_numpy())
    corrected = tables.usage[tables.usage["customer_id"].isin(tables.corrected)]
    assert (corrected.groupby("customer_id")["support_calls"].nunique() > 1).any()  # corrections differ


def test_two_models_are_tracked_and_the_better_one_became_champion_first(demo: Any) -> None:
    state, _ = demo
    client = state.client
    page = client.search_runs(experiment=EXPERIMENT, order_by=["metrics.auc DESC"])
    assert len(page.runs) == 4  # two initial candidates, two retrained
    first = [r for r in state.runs if not r["name"].endswith("-retrained")]
    best = max(first, key=lambda r: r["metrics"]["auc"])
    assert state.champion.version == best["version"]
    assert state.champion.signature is not None
    assert state.champion.signature.input_names == FEATURES
    run = client.get_run(best["run"])
    assert len(run.inputs) == 2  # train and eval datasets are recorded
    assert run.artifacts[0].path == "reports/segment_auc.csv"


def test_serving_by_customer_id_and_monitoring_find_the_drifted_segment(demo: Any) -> None:
    state, _ = demo
    for key in ("serve_c1", "serve_c8"):
        assert state.data[key].errors == 0
        assert state.data[key].requests > 0
    home = state.client.settings.home
    assert any((home / "predictions").rglob("*.parquet"))
    monitored = state.data["monitor"].summary
    assert "monthly_charges" in monitored.drifted_features
    assert monitored.worst_segment in ("region=EU & plan=basic", "plan=basic & region=EU")
    assert (home / "reports" / "churn-monitoring.html").exists()


def test_the_retrained_version_passed_the_gate_and_the_canary_promoted_it(demo: Any) -> None:
    state, _ = demo
    retrained = state.data["retrained"]
    assert retrained.version == 3
    history = state.client.deployments.history(ENDPOINT)
    actions = [(h.action, h.actor) for h in history]
    assert actions[:2] == [("created", "demo"), ("canary_started", "demo")]
    assert ("traffic_shifted", "controller") in actions
    promoted = next(h for h in history if h.action == "promoted")
    assert promoted.actor == "controller"
    assert promoted.spec.primary.version == retrained.version
    assert "no check failed" in promoted.reason
    assert state.data["canary"]["failed"] == 0


def test_the_planted_broken_version_was_rolled_back_automatically(demo: Any) -> None:
    state, _ = demo
    retrained, broken = state.data["retrained"], state.data["broken"]
    last = state.client.deployments.history(ENDPOINT)[-1]
    assert (last.action, last.actor) == ("rolled_back", "controller")
    assert last.reason.startswith("error_rate: candidate worse")
    assert last.spec.primary.version == retrained.version
    assert [v.version for v in last.spec.variants if v.role in ("primary", "canary")] == [retrained.version]
    rollback = state.data["rollback"]
    assert rollback["stable_failed"] == 0  # callers on the stable version never saw an error
    assert rollback["stable_requests"] > 0
    assert 0 < rollback["broken_failed"] <= rollback["broken_requests"]
    assert broken.version == 4
    champion = mlpilot.Client(settings=state.client.settings).get_model_version(MODEL_NAME, "champion")
    assert champion.version == retrained.version  # the promotion stands; the broken build never became champion


def test_served_features_are_in_parity_with_the_offline_join(demo: Any) -> None:
    report = demo[0].data["parity"]
    assert report.compared > 0
    assert report.mismatches == 0


def test_the_audit_trail_names_who_did_what_and_why(demo: Any) -> None:
    state, text = demo
    events = state.client.deployments.events(ENDPOINT)
    kinds = [(e.kind, e.actor) for e in events]
    assert ("deployment.created", "demo") in kinds
    assert ("deployment.promoted", "controller") in kinds
    rolled = [e for e in events if e.kind == "deployment.rolled_back"]
    assert len(rolled) == 1
    assert rolled[0].actor == "controller"
    assert rolled[0].payload["reason"].startswith("error_rate")
    assert all(e.payload.get("reason") for e in events if e.actor == "demo")
    moves = [e for e in state.client.registry.model_history(MODEL_NAME) if e.kind == "model.alias_set"]
    champion_moves = [(e.actor, e.payload["version"]) for e in moves if e.payload["alias"] == "champion"]
    assert champion_moves[-1] == ("controller", state.data["retrained"].version)
    for needle in ("leakage report", "rolled back automatically", "0 mismatches", "mlpilot deploy show churn"):
        assert needle in text
