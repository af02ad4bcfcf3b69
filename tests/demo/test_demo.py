from __future__ import annotations

import io

from rich.console import Console

import mlpilot
from mlpilot.client import Client
from mlpilot.demo.data import FEATURES
from mlpilot.demo.tour import EXPERIMENT, MODEL_NAME, run_demo


def test_demo_trains_registers_and_promotes_the_better_model() -> None:
    out = io.StringIO()
    client = Client()
    state = run_demo(client, rows=8_000, seed=1, console=Console(file=out, width=120))
    page = client.search_runs(experiment=EXPERIMENT, order_by=["metrics.auc DESC"])
    assert len(page.runs) == 2
    best = page.runs[0]
    champion = mlpilot.get_model_version(MODEL_NAME, "champion")
    assert champion.run_id == best.info.id
    assert {v.version for v in state.versions} == {1, 2}
    assert len(best.inputs) == 2  # train and eval datasets are recorded
    assert best.artifacts[0].path == "reports/segment_auc.csv"
    predictor = mlpilot.load_model(f"models:/{MODEL_NAME}@champion")
    frame = state.data["test"]
    assert champion.signature is not None
    assert champion.signature.input_names == FEATURES
    proba = predictor.predict_proba(frame[FEATURES].head(10))
    assert proba.shape == (10, 2)
    for key in ("serve_c1", "serve_c8"):
        report = state.data[key]
        assert report.errors == 0
        assert report.requests > 0
    assert any((client.settings.home / "predictions").rglob("*.parquet"))
    monitored = state.data["monitor"].summary
    assert "monthly_charges" in monitored.drifted_features
    assert monitored.worst_segment in ("region=EU & plan=basic", "plan=basic & region=EU")
    assert (client.settings.home / "reports" / "churn-monitoring.html").exists()
    text = out.getvalue()
    assert "champion" in text
    assert "mlpilot runs list" in text
    client.close()
