"""A candidate that fails is refused by the gate with a reason, never crashes it: one that raises on some rows,
returns NaN, returns the wrong number of predictions, has NaN probabilities, does not load, or breaks only on
the one-row requests a server sends. In process (with a holdout), through a real ``mlpilot server`` (409 JSON)
and from the CLI (one line, exit 4); nothing is started and the deployment is left as it was.

The planted models are plain Python (pyfunc) and their bugs are ones real models have: a rule that throws on
out-of-range inputs, NaN where a transform is undefined, rows dropped before predicting, a batch-statistics
normalisation (NaN for one row), a squeeze that breaks one-row input, an export with a fixed batch size.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from click.testing import CliRunner

from mlpilot.artifacts import FsspecArtifactStore
from mlpilot.deploy import Deployments, GateConfig
from mlpilot.errors import ConflictError, InvalidInputError
from mlpilot.registry import RegistryService, log_model
from mlpilot.store import Store

pytest.importorskip("cloudpickle")

#: inputs beyond this (on the second feature) are the "out of range" rows some planted models fail on
LIMIT = 1.5


class Healthy:
    """Class 1 when the first feature is positive, with probabilities."""

    def predict(self, x: Any) -> Any:
        return (np.asarray(x)[:, 0] > 0).astype(np.int64)

    def predict_proba(self, x: Any) -> Any:
        p = 1.0 / (1.0 + np.exp(-4 * np.asarray(x)[:, 0]))
        return np.column_stack([1 - p, p])


class RaisesOutOfRange(Healthy):
    def predict(self, x: Any) -> Any:
        arr = np.asarray(x)
        if np.any(np.abs(arr[:, 1]) > LIMIT):
            raise ValueError("feature 1 out of the training range")
        return super().predict(arr)


class NanOutOfRange(Healthy):
    def predict(self, x: Any) -> Any:
        arr = np.asarray(x)
        return np.where(np.abs(arr[:, 1]) > LIMIT, np.nan, super().predict(arr).astype(np.float64))


class DropsOutOfRange(Healthy):
    """Filters rows it considers outliers before predicting: fewer predictions than rows."""

    def predict(self, x: Any) -> Any:
        arr = np.asarray(x)
        return super().predict(arr[np.abs(arr[:, 1]) <= LIMIT])


class NanProbabilities(Healthy):
    def predict_proba(self, x: Any) -> Any:
        proba = super().predict_proba(x)
        proba[np.abs(np.asarray(x)[:, 1]) > LIMIT] = np.nan
        return proba


class BatchNormalised(Healthy):
    """Standardises with the statistics of the batch it is given: NaN for a single row (0 / 0)."""

    def predict(self, x: Any) -> Any:
        arr = np.asarray(x)
        with np.errstate(invalid="ignore", divide="ignore"):
            z = (arr - arr.mean(axis=0)) / arr.std(axis=0)
        return z[:, 0]


class Squeezes(Healthy):
    """``np.squeeze`` turns a one-row batch into a vector: indexing it as a matrix then fails."""

    def predict(self, x: Any) -> Any:
        return super().predict(np.squeeze(np.asarray(x)))


class FixedBatch(Healthy):
    """Exported with a static batch of 8: pads the input and returns all 8 answers."""

    def predict(self, x: Any) -> Any:
        arr = np.asarray(x)
        padded = np.vstack([arr, np.zeros((max(0, 8 - len(arr)), arr.shape[1]))])
        return super().predict(padded)


def _refuse_to_load() -> Any:
    raise RuntimeError("this build needs a GPU driver")


class Unloadable(Healthy):
    """Pickles fine, but unpickling it raises (what a model importing a missing native library does)."""

    def __reduce__(self) -> Any:
        return (_refuse_to_load, ())


#: version number -> model, in registration order
MODELS = [
    Healthy(),
    RaisesOutOfRange(),
    NanOutOfRange(),
    DropsOutOfRange(),
    NanProbabilities(),
    BatchNormalised(),
    Squeezes(),
    FixedBatch(),
    Unloadable(),
]
HEALTHY, RAISES, NAN, DROPS, NAN_PROBA, BATCH_NORM, SQUEEZES, FIXED_BATCH, UNLOADABLE = range(1, len(MODELS) + 1)
#: models whose bug shows on the one-row requests of their own input sample, without any holdout
ONE_ROW = {
    BATCH_NORM: "non-finite predictions",
    SQUEEZES: "raised IndexError",
    FIXED_BATCH: "returned 8 predictions for 1 rows",
}


def _example() -> Any:
    """Eight in-range rows: every planted model answers them (log_model predicts on its example)."""
    rng = np.random.default_rng(1)
    return rng.uniform(-1, 1, size=(8, 4))


def _register(registry: Any, artifacts: Any) -> None:
    for model in MODELS:
        log_model(model, "churn", registry=registry, artifacts=artifacts, input_example=_example())


@pytest.fixture
def holdout() -> tuple[Any, Any]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 4))
    return X, (X[:, 0] > 0).astype(np.int64)


@pytest.fixture
def deployments(tmp_path: Path) -> Iterator[Deployments]:
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    artifacts = FsspecArtifactStore(str(tmp_path / "artifacts"))
    _register(RegistryService(store), artifacts)
    service = Deployments(store, artifacts=artifacts)
    service.create("churn", model="churn", version=HEALTHY, gate=GateConfig(metric="accuracy", tolerance=0.05))
    yield service
    store.close()


def _unchanged(deployments: Deployments, name: str, before: Any) -> None:
    after = deployments.get(name)
    assert after.revision == before.revision
    assert after.spec == before.spec
    assert len(deployments.history(name)) == before.revision


@pytest.mark.parametrize(
    ("version", "reason"),
    [
        (RAISES, "it raised ValueError: feature 1 out of the training range"),
        (NAN, "non-finite predictions (NaN, inf or missing) for 400 rows"),
        (DROPS, "predictions for 400 rows"),
        (NAN_PROBA, "non-finite probabilities"),
    ],
)
def test_a_candidate_failing_on_the_holdout_is_refused_with_the_reason(
    deployments: Deployments, holdout: Any, version: int, reason: str
) -> None:
    report = deployments.check_gate("churn", version, holdout=holdout)
    assert not report.passed
    evaluation = next(c for c in report.checks if c.name == "evaluation")
    assert not evaluation.passed
    assert evaluation.detail.startswith(f"v{version} fails on the holdout: ")
    assert reason in evaluation.detail
    before = deployments.get("churn")
    for start in (deployments.start_canary, deployments.start_blue_green):
        with pytest.raises(ConflictError, match=f"gate refused v{version}: evaluation: v{version} fails") as err:
            start("churn", version, holdout=holdout, reason="retrained")
        assert err.value.details["gate"]["passed"] is False
    _unchanged(deployments, "churn", before)


def test_a_healthy_candidate_still_passes_on_the_same_holdout(deployments: Deployments, holdout: Any) -> None:
    report = deployments.check_gate("churn", HEALTHY, holdout=holdout)
    assert report.passed, report.to_dict()
    assert {c.name for c in report.checks} == {"signature", "evaluation", "load"}


@pytest.mark.parametrize(("version", "reason"), sorted(ONE_ROW.items()))
def test_a_candidate_failing_on_one_row_requests_fails_load_and_latency(
    deployments: Deployments, version: int, reason: str
) -> None:
    gate = GateConfig(latency_budget_ms=10_000)
    report = deployments.check_gate("churn", version, gate=gate)
    failed = {c.name: c.detail for c in report.failures}
    assert set(failed) == {"load", "latency"}
    assert failed["load"].startswith(f"v{version} fails on one-row requests of its input sample: it ")
    assert reason in failed["load"]
    assert "not timed" in failed["latency"]  # a model that errors is never "fast enough"
    report = deployments.check_gate("churn", version, gate=GateConfig())  # no budget: the load check alone
    assert [c.name for c in report.failures] == ["load"]


def test_a_candidate_that_does_not_load_is_refused(deployments: Deployments, holdout: Any) -> None:
    report = deployments.check_gate("churn", UNLOADABLE, holdout=holdout)
    failed = {c.name: c.detail for c in report.failures}
    assert set(failed) == {"evaluation", "load"}
    assert "this build needs a GPU driver" in failed["load"]
    assert failed["evaluation"] == f"v{UNLOADABLE} cannot be evaluated: it does not load"
    before = deployments.get("churn")
    with pytest.raises(ConflictError, match="does not load"):
        deployments.start_canary("churn", UNLOADABLE)
    _unchanged(deployments, "churn", before)


def test_a_champion_failing_on_the_holdout_leaves_nothing_to_compare(deployments: Deployments, holdout: Any) -> None:
    deployments.create("legacy", model="churn", version=RAISES, gate=GateConfig(metric="accuracy"))
    report = deployments.check_gate("legacy", HEALTHY, holdout=holdout)
    evaluation = next(c for c in report.checks if c.name == "evaluation")
    assert not evaluation.passed
    assert evaluation.detail.startswith(f"the champion v{RAISES} fails on the holdout (raised ValueError")
    assert "nothing to compare with" in evaluation.detail
    # the way forward is an explicit, recorded decision
    info = deployments.start_canary("legacy", HEALTHY, skip_gate=True, reason="the champion fails on outliers")
    assert info.spec.state == "canary"


def test_the_callers_own_mistakes_are_invalid_input(deployments: Deployments, holdout: Any) -> None:
    X, y = holdout
    with pytest.raises(InvalidInputError, match="holdout: 400 rows of inputs but 399 labels") as err:
        deployments.check_gate("churn", HEALTHY, holdout=(X, y[:-1]))
    assert err.value.field == "holdout"

    def broken_metric(truth: Any, pred: Any) -> float:
        raise ZeroDivisionError("oops")

    with pytest.raises(InvalidInputError, match="metric_fn: failed on the holdout predictions") as err:
        deployments.check_gate("churn", HEALTHY, holdout=holdout, metric_fn=broken_metric)
    assert err.value.field == "metric_fn"


# -- through a real control plane and the CLI -----------------------------------------------------------------
@pytest.fixture
def served(live_server: Any) -> Any:
    _register(live_server.client.registry, live_server.client.artifacts)
    live_server.services.deployments.create("churn", model="churn", version=HEALTHY)
    return live_server


@pytest.mark.parametrize("version", [*sorted(ONE_ROW), UNLOADABLE])
def test_rest_answers_409_with_the_report_and_starts_nothing(served: Any, version: int) -> None:
    with httpx.Client(base_url=served.url, timeout=60) as http:
        before = http.get("/api/v1/deployments/churn").json()
        for route in ("canary", "blue-green", "shadow"):
            r = http.post(f"/api/v1/deployments/churn/{route}", json={"version": version, "reason": "try"})
            assert r.status_code == 409, r.text
            body = r.json()
            assert body["error"] == "ConflictError"
            assert body["message"].startswith(f"the gate refused v{version}: load: v{version} ")
            assert "Traceback" not in r.text
            load = next(c for c in body["details"]["gate"]["checks"] if c["name"] == "load")
            assert load["passed"] is False
            expected = ONE_ROW.get(version, "does not load")
            assert expected in load["detail"]
        after = http.get("/api/v1/deployments/churn").json()
    assert after == before


def test_cli_refusal_is_one_line_and_exit_4() -> None:
    from mlpilot.cli.context import settings
    from mlpilot.cli.main import cli
    from mlpilot.client import Client

    settings.cache_clear()
    client = Client()
    try:
        _register(client.registry, client.artifacts)
    finally:
        client.close()
    runner = CliRunner()
    assert runner.invoke(cli, ["deploy", "create", "churn", "--model", "churn", "--version", "1"]).exit_code == 0
    for version, reason in [*ONE_ROW.items(), (UNLOADABLE, "does not load")]:
        result = runner.invoke(cli, ["deploy", "canary", "churn", str(version), "--steps", "10,100"])
        assert result.exit_code == 4, result.output
        assert result.output.startswith(f"error: the gate refused v{version}: load: ")
        assert reason in result.output
        assert result.output.count("\n") == 1
        assert "Traceback" not in result.output
    shown = runner.invoke(cli, ["deploy", "show", "churn", "--json"])
    info = json.loads(shown.output)
    assert [h["action"] for h in info["history"]] == ["created"]
    assert info["deployment"]["spec"]["state"] == "stable"
    settings.cache_clear()
