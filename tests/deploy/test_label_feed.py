"""Labels logged through monitoring feed a rollout's online accuracy (``LabelFeed``), on each metadata backend.

The prediction log is written by the model server's own writer (``PredictionLog``) as a routed data plane
writes it (served under the deployment's name, partitioned by the version that answered); labels go through
``Monitor.log_labels`` exactly as ``POST /v1/labels`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlpilot.artifacts import FsspecArtifactStore
from mlpilot.deploy import ABConfig, AnalysisConfig, CanaryConfig, Deployments, VariantStats
from mlpilot.deploy.labels import LabelFeed
from mlpilot.errors import InvalidInputError
from mlpilot.monitor import EndpointConfig, LabelBatch, Monitor
from mlpilot.registry import RegistryService, Signature, TensorSpec
from mlpilot.store import Store

from .conftest import FakeClock, register

pytest.importorskip("duckdb")


@dataclass
class Env:
    deployments: Deployments
    monitor: Monitor
    feed: LabelFeed
    clock: FakeClock
    log_url: str
    registry: RegistryService
    counter: int = 0

    def predict(
        self, version: int, predictions: Sequence[Any], *, endpoint: str = "churn", at_ms: int | None = None
    ) -> list[str]:
        """Log one one-row request per prediction, answered by ``version``; returns the request ids."""
        from mlpilot.serving.predlog import LogRecord, PredictionLog

        log = PredictionLog(self.log_url)
        ids = []
        start = self.clock.now if at_ms is None else at_ms
        for i, pred in enumerate(predictions):
            self.counter += 1
            rid = f"req-{self.counter}"
            ids.append(rid)
            outputs = {"output": np.array([pred])}
            columns = {"input": np.array([[0.1 * i, 0.0, 0.0, 0.0]])}
            log.record(LogRecord(rid, start + i, "v1", endpoint, version, 1, columns, outputs, 0.002))
        log.close()
        return ids

    def label(self, ids: Sequence[str], labels: Sequence[Any], endpoint: str = "churn") -> None:
        self.monitor.log_labels(LabelBatch.from_request_ids(ids, labels, endpoint=endpoint), actor="etl")

    def outcomes(self, name: str = "churn") -> dict[str, tuple[int, int]]:
        """``{variant: (labelled, right)}`` as the analysis sees them."""
        report = self.deployments.analyze(name)
        return {
            k: (int(v["outcomes"]), round((v["outcome_mean"] or 0) * v["outcomes"])) for k, v in report.variants.items()
        }


@pytest.fixture
def env(store: Store, tmp_path: Path, clock: FakeClock) -> Env:
    registry = RegistryService(store)
    for _ in range(3):
        register(registry)
    deployments = Deployments(store, clock=clock)
    artifacts = FsspecArtifactStore(str(tmp_path / "artifacts"))
    log_url = str(tmp_path / "predictions")
    monitor = Monitor(store, artifacts, predictions_url=log_url)
    deployments.create("churn", model="churn", version=1, analysis=AnalysisConfig(min_samples=50, min_labels=50))
    return Env(deployments, monitor, LabelFeed(deployments, monitor), clock, log_url, registry)


def _canary(env: Env, name: str = "churn", version: int = 2) -> None:
    env.clock.advance(1)
    config = CanaryConfig(steps=[50, 100], min_step_seconds=60, min_step_requests=100)
    env.deployments.start_canary(name, version, canary=config, skip_gate=True)
    env.clock.advance(1)


def test_labels_become_per_variant_accuracy_and_count_once(env: Env) -> None:
    # v2 answered before this rollout too (an earlier, rolled-back canary): those labels are not this rollout's
    old = env.predict(2, [0] * 40, at_ms=env.clock.now - 10_000)
    _canary(env)
    truth = [i % 2 for i in range(200)]
    right = env.predict(1, truth)
    wrong = [1 - y if i % 10 < 3 else y for i, y in enumerate(truth)]  # 30% wrong
    cand = env.predict(2, wrong)
    env.label(old + right + cand, [1] * 40 + truth + truth)

    recorded = env.feed.sync()

    assert set(recorded) == {"churn"}
    assert env.outcomes() == {"v1": (200, 200), "v2": (200, 140)}
    # the same labels posted again (a retried ETL job) count once
    env.label(right + cand, truth + truth)
    env.feed.sync()
    assert env.outcomes() == {"v1": (200, 200), "v2": (200, 140)}
    # a corrected label replaces the old verdict: v2 said 1 for the first request, labelled 0 until now
    assert (wrong[0], truth[0]) == (1, 0)
    env.label([cand[0]], [1])
    env.feed.sync()
    assert env.outcomes() == {"v1": (200, 200), "v2": (200, 141)}


def test_worse_accuracy_rolls_back_and_no_labels_never_does(env: Env) -> None:
    _canary(env)
    truth = [i % 2 for i in range(300)]
    ids_1 = env.predict(1, truth)
    ids_2 = env.predict(2, [1 - y if i % 10 < 3 else y for i, y in enumerate(truth)])
    env.deployments.record_observations(
        "churn",
        source="replica-1",
        revision=env.deployments.get("churn").revision,
        rollout=env.deployments.get("churn").spec.rollout,
        variants={"v1": _served(300), "v2": _served(300)},
    )
    env.feed.sync()
    before = env.deployments.analyze("churn")
    accuracy = next(c for c in before.checks if c["metric"] == "accuracy")
    assert accuracy["status"] == "insufficient_data"  # no labels yet: no verdict
    assert before.action != "rollback"

    env.label(ids_1 + ids_2, truth + truth)
    env.feed.sync()
    after = env.deployments.analyze("churn")
    assert after.action == "rollback"
    assert "accuracy" in after.reason


def _served(n: int) -> VariantStats:
    stats = VariantStats()
    for i in range(n):
        stats.record(status=200, latency_ms=5.0 + (i % 7), predictions=[i % 2])
    return stats


@pytest.mark.parametrize(
    ("predictions", "labels", "right"),
    [
        ([1, 0, 1, 0], [1, 0, 0, 1], 2),
        ([1.0, 0.0, 1.0, 2.0], [1, 0, True, "2"], 4),
        (["yes", "no", "yes", "no"], ["yes", "yes", "yes", "no"], 3),
        ([True, False, True, False], [True, False, 1, "true"], 3),
    ],
    ids=["ints", "floats-vs-numbers", "text", "booleans"],
)
def test_a_prediction_is_right_when_it_equals_its_label(
    env: Env, predictions: list[Any], labels: list[Any], right: int
) -> None:
    _canary(env)
    ids = env.predict(2, predictions)
    env.label(ids, labels)
    env.feed.sync()
    assert env.outcomes()["v2"] == (4, right)


def test_continuous_labels_are_not_scored(env: Env) -> None:
    _canary(env)
    ids = env.predict(2, [0.5 * i for i in range(30)])
    env.label(ids, [0.5 * i + 0.1 for i in range(30)])
    assert env.feed.sync() == {}
    assert env.outcomes()["v2"] == (0, 0)


def test_the_endpoint_settings_name_the_prediction_and_the_task(env: Env) -> None:
    _canary(env)
    ids = env.predict(2, [1, 0, 1])
    env.label(ids, [1, 0, 0])
    env.monitor.configure_endpoint("churn", EndpointConfig(task="regression"))
    assert env.feed.sync() == {}
    # the settings changed, not the labels: the next resync would recompute; here it is asked for now
    env.monitor.configure_endpoint("churn", EndpointConfig(prediction="missing"))
    recorded = env.feed.recompute("churn")
    assert recorded is not None
    assert "v2" not in recorded  # v2 logged no such output: nothing to score, nothing recorded
    env.monitor.configure_endpoint("churn", EndpointConfig(prediction="output"))
    env.feed.recompute("churn")
    assert env.outcomes()["v2"] == (3, 2)


def test_ab_tests_on_accuracy_read_labels_and_on_outcomes_do_not(env: Env) -> None:
    env.deployments.start_ab("churn", 2, ab=ABConfig(split=50, metric="outcome"), skip_gate=True)
    env.clock.advance(1)
    ids = env.predict(2, [1, 1])
    env.label(ids, [1, 0])
    assert env.feed.sync() == {}  # business outcomes are posted to /outcomes, not mixed with labels
    env.deployments.rollback("churn")
    env.clock.advance(1)
    env.deployments.start_ab("churn", 2, ab=ABConfig(split=50, metric="accuracy"), skip_gate=True)
    env.clock.advance(1)
    ids = env.predict(2, [1, 1, 0])
    env.label(ids, [1, 0, 0])
    env.feed.sync()
    assert env.deployments.analyze("churn").ab["arms"]["v2"]["outcomes"] == 3  # type: ignore[index]


def test_each_round_is_bounded_and_events_name_what_to_recompute(env: Env) -> None:
    feed = LabelFeed(env.deployments, env.monitor, max_per_round=1)
    for name in ("fraud", "upsell"):
        env.deployments.create(name, model="churn", version=1)
        _canary(env, name)
    _canary(env)
    assert len(feed.sync()) == 1  # the first round looks at every canary, one per round
    assert len(feed.pending()) == 2
    feed.sync()
    feed.sync()
    assert feed.pending() == []
    ids = env.predict(2, [1, 0], endpoint="fraud")
    env.label(ids, [1, 1], endpoint="fraud")
    assert list(feed.sync()) == ["fraud"]  # the label batch's event names it
    assert env.outcomes("fraud")["v2"] == (2, 1)
    assert feed.sync() == {}  # nothing new
    ids = env.predict(1, [1], endpoint="search")  # monitored, but not a deployment
    env.label(ids, [1], endpoint="search")
    assert feed.sync() == {}
    assert feed.pending() == []


def test_replicas_cannot_report_under_the_feeds_names(env: Env) -> None:
    info = env.deployments.get("churn")
    for source in ("labels", "outcomes"):
        with pytest.raises(InvalidInputError, match="reserved"):
            env.deployments.record_observations(
                "churn", source=source, revision=info.revision, rollout=0, variants={"v1": _served(1)}
            )


def test_a_signature_without_outputs_falls_back_to_output(env: Env) -> None:
    from mlpilot.registry import NewModelVersion

    new = NewModelVersion(
        flavor="sklearn",
        artifact_sha256="0" * 64,
        artifact_size=1,
        signature=Signature(kind="ndarray", inputs=[TensorSpec(name="input", dtype="float64", shape=[-1, 4])]),
    )
    version = env.registry.create_model_version("churn", new).version
    _canary(env, version=version)
    ids = env.predict(version, [1, 0])
    env.label(ids, [1, 1])
    env.feed.sync()
    assert env.outcomes()[f"v{version}"] == (2, 1)
