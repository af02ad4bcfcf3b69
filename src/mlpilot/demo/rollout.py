"""Closing the loop: retrain on the labelled recent traffic, gate the new version, canary it through the
control plane until the analysis promotes it; then the two safety nets against a bad version: the gate
refusing one that fails on the holdout, and the automatic rollback of one that passes the gate but fails on
live traffic the holdout does not have.

The control plane (REST API, rollout controller and its label feed) and a data plane following it run in
threads of this process (:mod:`mlpilot.demo.planes`) over the same home, so the data plane writes its
prediction log where the control plane reads it. Callers send one-row requests keyed by customer id from a
few threads (:mod:`mlpilot.demo.traffic`); their true labels are logged through the monitoring API keyed by
request id, as a user's label job would, and the label feed turns them into each variant's online accuracy.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlpilot.demo.data import FEATURES, NEW_PLAN, TARGET, with_new_plan
from mlpilot.demo.state import ENDPOINT, EXPERIMENT, MODEL_NAME, SERVICE, DemoState, progress
from mlpilot.demo.traffic import CALLERS, LabelJob, Traffic
from mlpilot.demo.train import BROKEN_REGIONS, evaluate, make_broken, make_candidates, make_strict
from mlpilot.errors import MlpilotError

__all__ = ["step_canary", "step_retrain", "step_rollback"]

#: Canary steps short enough for a demo: 25% then 50% of traffic, at least 4 s and 100 canary requests each.
STEPS = [25.0, 50.0, 100.0]
MIN_STEP_SECONDS = 4.0
MIN_STEP_REQUESTS = 100
#: Labels are logged in batches at most this often.
LABEL_INTERVAL = 1.0
#: Share of this week's new customers on the plan launched after the retraining.
NEW_PLAN_SHARE = 0.4


def _failed(status: int) -> bool:
    """A server error, or no answer at all (status 0)."""
    return status == 0 or status >= 500


def _weights(spec: Any) -> str:
    live = [v for v in spec.variants if v.role in ("primary", "canary")]
    return " · ".join(f"v{v.version} {v.weight:g}%" for v in sorted(live, key=lambda v: v.version))


# -- retrain ------------------------------------------------------------------------------------------------
def step_retrain(state: DemoState) -> None:
    from mlpilot.features import get_training_set

    console = state.console
    fresh = state.data.get("fresh")
    if fresh is None or state.features is None:
        state.skip("retraining")
        return
    # The closed loop: the customers served last step, their labels, and the features *as served* (the
    # point-in-time join at each request's time), so training sees exactly what the model saw.
    labels = fresh[["customer_id", TARGET]].assign(event_timestamp=fresh["requested_at"])
    joined = get_training_set(
        labels, state.features.service, definitions=state.features.definitions, output="pandas"
    ).data
    rng = np.random.default_rng(state.seed + 5)
    mask = rng.random(len(joined)) < 0.6
    recent, holdout = joined[mask], joined[~mask]
    history = state.data["train"]
    train = _concat(history, recent)
    # Recent rows count double: they describe the customers the model serves now.
    weights = np.r_[np.ones(len(history)), np.full(len(recent), 2.0)]
    champion = state.client.load_model(f"models:/{MODEL_NAME}@champion")
    champion_acc = float(np.mean(champion.predict(holdout[FEATURES]) == holdout[TARGET].to_numpy()))
    console.print(
        f"training set of the loop: {len(joined):,} served requests with their labels, features joined as of "
        f"each request; {len(recent):,} to train on (with {len(history):,} historical rows), {len(holdout):,} held out"
    )
    best: dict[str, Any] | None = None
    with progress(console) as bar:
        candidates = make_candidates(state.seed)
        task = bar.add_task("retraining", total=len(candidates))
        for cand in candidates:
            bar.update(task, description=f"retraining {cand.name}")
            with state.client.start_run(
                EXPERIMENT, name=f"{cand.name}-retrained", tags={"team": "growth", "trigger": "drift"}
            ) as run:
                run.log_params({"model": cand.name, **cand.params, "recent_weight": 2.0})
                run.log_dataset(recent, name="churn-served-labelled", context="train")
                run.log_dataset(holdout, name="churn-served-holdout", context="eval")
                model = cand.build().fit(train[FEATURES], train[TARGET], clf__sample_weight=weights)
                metrics = evaluate(model, holdout)
                run.log_metrics(metrics)
            entry = {"run": run.id, "name": f"{cand.name}-retrained", "metrics": metrics, "model": model}
            if best is None or metrics["accuracy"] > best["metrics"]["accuracy"]:
                best = entry
            bar.console.print(
                f"  {cand.name}: accuracy {metrics['accuracy']:.3f}, AUC {metrics['auc']:.3f} on the recent holdout "
                f"(the champion: accuracy {champion_acc:.3f})"
            )
            bar.advance(task)
    assert best is not None
    version = state.client.log_model(
        best["model"],
        MODEL_NAME,
        input_example=holdout[FEATURES].head(5),
        training_data=train[FEATURES],
        run=best["run"],
        metrics={k: v for k, v in best["metrics"].items() if not k.startswith("auc_region_")},
        description=f"{best['name']}: retrained on labelled traffic after drift",
    )
    recorded = {k: best[k] for k in ("run", "name", "metrics")}
    state.runs.append({**recorded, "version": version.version, "evaluated_on": "recent holdout"})
    state.versions.append(version)
    state.data["retrained"] = version
    state.data["holdout"] = holdout
    state.data["retrained_model"] = best["model"]
    console.print(
        f"registered [bold]{MODEL_NAME} version {version.version}[/bold] ({best['name']}); next: the gate and a canary"
    )


def _concat(*frames: Any) -> Any:
    import pandas as pd

    return pd.concat([f[[*FEATURES, TARGET]] for f in frames], ignore_index=True)


# -- canary -------------------------------------------------------------------------------------------------
@dataclass
class Rollout:
    """The planes, the callers and the label job the canary and rollback steps share."""

    control: Any
    plane: Any
    operator: Any
    traffic: Traffic
    labels: LabelJob
    by_id: bool

    def route_callers(self, customers: Any) -> None:
        """Callers send requests for ``customers`` from now on."""
        self.traffic.stop()
        self.labels.send(self.traffic.take_answers())
        self.traffic = Traffic(self.plane.url, ENDPOINT, customers, by_id=self.by_id).start()

    def close(self) -> None:
        self.traffic.stop()
        self.plane.stop()
        self.operator.close()
        self.control.stop()


def _create_endpoint(state: DemoState, primary: int) -> None:
    from mlpilot.deploy import AnalysisConfig, CanaryConfig, GateConfig

    deployments = state.deployments
    if ENDPOINT in {d.name for d in deployments.list_deployments()}:
        deployments.delete(ENDPOINT, actor="demo", reason="the demo starts its endpoint over")
    deployments.create(
        ENDPOINT,
        model=MODEL_NAME,
        version=primary,
        canary=CanaryConfig(steps=STEPS, min_step_seconds=MIN_STEP_SECONDS, min_step_requests=MIN_STEP_REQUESTS),
        analysis=AnalysisConfig(min_samples=100, min_labels=100),
        # Before any traffic, a candidate must be at least as accurate as the primary on the caller's holdout.
        gate=GateConfig(metric="accuracy", tolerance=0.0),
        actor="demo",
        reason="the champion goes live behind the rollout controller",
    )
    state.console.print(f"deployment [bold]{ENDPOINT}[/bold] created: v{primary} takes 100% of traffic")


def _start_planes(state: DemoState) -> Rollout:
    from mlpilot.client import Client
    from mlpilot.demo.planes import start_control_plane
    from mlpilot.demo.serve import predictions_url
    from mlpilot.deploy.dataplane import build_data_plane, serve_in_thread
    from mlpilot.serving import RegistrySource

    # The real control-plane app: its rollout controller runs with the label feed, reading the prediction log
    # at the home's default location, which is where the data plane below writes it.
    control = start_control_plane(state.client.settings)
    operator = Client(control.url)
    by_id = state.features is not None
    # The data plane loads models and the registered feature definitions over the control plane's REST API
    # (it never touches the database) and looks each customer's features up in the online store.
    plane = build_data_plane(
        RegistrySource(operator.registry, operator.artifacts, features=operator.features),
        control_url=control.url,
        names=[ENDPOINT],
        poll_interval=0.2,
        report_interval=0.5,
        log_url=predictions_url(state),
        # flushed often, so that labels can follow their predictions within a second or two
        serve_options={"inference_threads": 2, "log": {"flush_interval": 0.5}},
        features={ENDPOINT: SERVICE} if by_id else None,
        features_online_url=state.features.online_url if by_id else None,
    )
    running = serve_in_thread(plane)
    traffic = Traffic(running.url, ENDPOINT, state.data["fresh"], by_id=by_id).start()
    state.console.print(
        f"control plane {control.url} (REST API + rollout controller + label feed); data plane {running.url} "
        f"following it; {CALLERS} callers sending one-row requests by customer id"
    )
    # Ground truth goes through the control plane's monitoring API, as a user's label job would send it.
    return Rollout(control, running, operator, traffic, LabelJob(operator.monitor), by_id)


def _watch(
    state: DemoState, rollout: Rollout, done: Callable[[Any], bool], *, timeout: float = 120.0
) -> tuple[Any, float, Any]:
    """Log labels, print every revision the controller (or anyone) writes, show the live analysis; until
    ``done(info)``. Returns the final info, the seconds it took and the last analysis of the rollout."""
    deployments = state.client.deployments
    seen = deployments.get(ENDPOINT).revision - 1
    started = time.monotonic()
    last_look = last_labels = 0.0
    report = None
    with state.console.status("analysing") as status:
        while True:
            if time.monotonic() - last_labels >= LABEL_INTERVAL:
                rollout.labels.send(rollout.traffic.take_answers())
                last_labels = time.monotonic()
            for entry in deployments.history(ENDPOINT, after_revision=seen):
                seen = entry.revision
                elapsed = time.monotonic() - started
                state.console.print(
                    f"  {elapsed:5.1f} s  rev {entry.revision}  [bold]{entry.action}[/bold] by {entry.actor}: "
                    f"{_weights(entry.spec)}" + (f" — {entry.reason}" if entry.reason else "")
                )
            info = deployments.get(ENDPOINT)
            if done(info):
                return info, time.monotonic() - started, report
            if time.monotonic() - started > timeout:
                raise MlpilotError(f"the rollout did not finish within {timeout:.0f} s: {info.spec.message}")
            if time.monotonic() - last_look > 1.0:
                report = deployments.analyze(ENDPOINT)
                counts = rollout.traffic.snapshot()
                per = ", ".join(
                    f"{v} {sum(n for (_, w), n in counts.items() if w == v):,}" for v in sorted({w for _, w in counts})
                )
                status.update(
                    f"analysis: {report.action} — {report.reason[:80]} | requests {per} | "
                    f"labels logged {rollout.labels.logged:,}"
                )
                last_look = time.monotonic()
            time.sleep(0.25)


def _drift(state: DemoState) -> str:
    """What monitoring found, for the audit trail's 'why'."""
    summary = state.data["monitor"].summary
    found = [f"drifted: {', '.join(summary.drifted_features)}"] if summary.drifted_features else []
    if summary.worst_segment:
        found.append(f"worst segment: {summary.worst_segment}")
    return "; ".join(found) or "scheduled retraining"


def _wait_applied(rollout: Rollout, revision: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(rev >= revision for _, rev, _ in rollout.plane.plane.follower.applied):
        if time.monotonic() > deadline:
            raise MlpilotError(f"the data plane did not follow revision {revision} within {timeout:.0f} s")
        time.sleep(0.05)


def _print_gate(state: DemoState, checks: list[dict[str, Any]]) -> None:
    for check in checks:
        mark = "[green]pass[/green]" if check["passed"] else "[red]FAIL[/red]"
        state.console.print(f"  {mark} {check['name']}: {check['detail']}")


def _holdout(state: DemoState) -> tuple[Any, Any]:
    holdout = state.data["holdout"]
    return holdout[FEATURES], holdout[TARGET].to_numpy()


def _accuracy(report: Any) -> dict[str, Any] | None:
    return next((c for c in report.checks if c["metric"] == "accuracy"), None) if report is not None else None


def step_canary(state: DemoState) -> None:
    from mlpilot.errors import ConflictError

    console = state.console
    retrained = state.data.get("retrained")
    if retrained is None or not state.embedded:
        state.skip("the canary")
        return
    champion = state.client.get_model_version(MODEL_NAME, "champion")
    _create_endpoint(state, champion.version)
    gate = state.deployments.check_gate(ENDPOINT, retrained.version, holdout=_holdout(state))
    console.print(f"gate for v{retrained.version} against v{champion.version}:")
    _print_gate(state, gate.to_dict()["checks"])
    if not gate.passed:
        raise ConflictError(f"the gate refused v{retrained.version}", gate=gate.to_dict())
    rollout = state.data["rollout"] = _start_planes(state)
    before = rollout.traffic.snapshot()
    labels_before = rollout.labels.logged
    _start_canary(
        state,
        retrained.version,
        reason=f"v{retrained.version} retrained on labelled traffic after drift ({_drift(state)})",
        require_labels=True,
    )
    console.print(
        f"canary v{retrained.version}: steps {', '.join(f'{s:g}%' for s in STEPS)}, each at least "
        f"{MIN_STEP_SECONDS:g} s and {MIN_STEP_REQUESTS} canary requests; each answer's label is logged through "
        "the monitoring API (by request id) a second later, and the label feed scores every variant"
    )
    info, took, report = _watch(state, rollout, lambda i: i.spec.state == "stable")
    _wait_applied(rollout, info.revision)
    after = rollout.traffic.snapshot()
    served = after - before
    failed = sum(n for (s, _), n in served.items() if _failed(s))
    now = state.client.get_model_version(MODEL_NAME, "champion")
    accuracy = _accuracy(report)
    state.data["canary"] = {
        "info": info,
        "served": served,
        "failed": failed,
        "seconds": took,
        "labels": rollout.labels.logged - labels_before,
        "accuracy": accuracy,
    }
    verdict = "promoted" if info.spec.primary.version == retrained.version else "rolled back"
    console.print(
        f"[bold]{verdict}[/bold] in {took:.0f} s: {sum(served.values()):,} requests, {failed} failed; "
        f"{rollout.labels.logged - labels_before:,} labels logged through monitoring"
        + (f"; online accuracy: {accuracy['detail']}" if accuracy else "")
        + f"; {MODEL_NAME}@champion → version {now.version}"
    )


# -- bad versions -------------------------------------------------------------------------------------------
def step_rollback(state: DemoState) -> None:
    rollout: Rollout | None = state.data.pop("rollout", None)
    if rollout is None:
        state.skip("the rollback")
        return
    try:
        stable = state.client.deployments.get(ENDPOINT).spec.primary.version
        _refused_by_the_gate(state)
        broken, info, served, took = _fails_in_production(state, rollout)
    finally:
        rollout.close()
    _report_rollback(state, info, served, broken, stable, took)


def _refused_by_the_gate(state: DemoState) -> None:
    """The first safety net: a build that fails on the holdout never gets traffic."""
    from mlpilot.errors import ConflictError

    console = state.console
    broken = make_broken(state.data["train"])
    sample = state.data["test"]
    sample = sample[sample["region"].isin(BROKEN_REGIONS)]
    version = state.client.log_model(
        broken,
        MODEL_NAME,
        input_example=sample[FEATURES].head(5),
        metrics={k: v for k, v in evaluate(broken, sample).items() if not k.startswith("auc_region_")},
        description="PLANTED BROKEN BUILD (demo): fitted on NA and EU only, it raises on APAC and LATAM customers",
    )
    state.versions.append(version)
    console.print(
        f"registered [bold]{MODEL_NAME} version {version.version}[/bold]: [red]a deliberately broken build planted "
        "by the demo[/red]: fitted on the NA and EU export only, its encoder raises on APAC and LATAM customers"
    )
    try:
        state.deployments.start_canary(
            ENDPOINT, version.version, holdout=_holdout(state), actor="demo", reason="planted broken build"
        )
    except ConflictError as exc:
        gate = exc.details["gate"]
        state.data["refused"] = {"version": version, "gate": gate, "message": exc.message}
        console.print(f"canary v{version.version}: [bold]the gate refused v{version.version}[/bold], no traffic sent:")
        _print_gate(state, [c for c in gate["checks"] if not c["passed"]])
        return
    raise MlpilotError(f"the gate let the planted broken v{version.version} through")


def _fails_in_production(state: DemoState, rollout: Rollout) -> tuple[int, Any, Counter[tuple[int, str]], float]:
    """The second safety net: a build that passes the gate but fails on live inputs its holdout never had is
    rolled back by the controller, on the canary's error rate."""
    import pandas as pd

    console = state.console
    fresh = state.data["fresh"]
    # This week's sign-ups, 40% of them on a plan launched after the retraining: not in any training set, and
    # not in the holdout (drawn before the launch).
    week = _this_week(state, len(fresh))
    if state.features is not None:
        state.features.push_customers(week)
    columns = ["customer_id", *FEATURES, TARGET]
    rollout.route_callers(pd.concat([fresh[columns], week[columns]], ignore_index=True))
    starter = int((week["plan"] == NEW_PLAN).sum())
    retrained = state.data["retrained"].version
    console.print(
        f"meanwhile a cheaper [bold]{NEW_PLAN!r}[/bold] plan launched: {len(week):,} customers signed up this week, "
        f"{starter:,} on it; callers now include them, and v{retrained} serves them (it encodes a plan it never "
        "saw as unknown)"
    )
    model = make_strict(state.data["retrained_model"])
    holdout = state.data["holdout"]
    metrics = {k: v for k, v in evaluate(model, holdout).items() if not k.startswith("auc_region_")}
    version = state.client.log_model(
        model,
        MODEL_NAME,
        input_example=holdout[FEATURES].head(5),
        metrics=metrics,
        description=f"PLANTED (demo): v{retrained} with a strict encoder: raises on categories it never saw",
    )
    state.versions.append(version)
    state.data["broken"] = version
    console.print(
        f"registered [bold]{MODEL_NAME} version {version.version}[/bold], [red]planted[/red]: v{retrained} with "
        "its category encoder made strict (a category it never saw raises instead of being encoded as unknown); "
        f"on every category it was trained on it predicts exactly like v{retrained}"
    )
    before = rollout.traffic.snapshot()
    _start_canary(state, version.version, reason=f"v{retrained} with a strict encoder; passed the gate on the holdout")
    console.print(
        f"the gate passed v{version.version}: holdout accuracy {metrics['accuracy']:.3f}, the same as v{retrained}'s "
        f"(the holdout was drawn before the {NEW_PLAN!r} plan launched); canary v{version.version}:"
    )
    info, took, _ = _watch(state, rollout, lambda i: i.spec.state == "stable")
    _wait_applied(rollout, info.revision)
    time.sleep(0.5)  # requests in flight at the switch finish on the version that took them
    return version.version, info, rollout.traffic.snapshot() - before, took


def _start_canary(state: DemoState, version: int, *, reason: str, require_labels: bool = False) -> None:
    """Start the canary of ``version`` on the demo endpoint, gated on the holdout.

    A retrained model is *meant* to predict differently after drift: it is judged on errors, latency and online
    accuracy from the labels logged through monitoring, not on whether its predictions moved.
    """
    from mlpilot.deploy import AnalysisConfig

    analysis = AnalysisConfig(
        min_samples=100,
        min_labels=100,
        require_labels=require_labels,
        on_prediction_shift="ignore",
        latency_tolerance=0.5,
    )
    state.deployments.start_canary(
        ENDPOINT, version, analysis=analysis, holdout=_holdout(state), actor="demo", reason=reason
    )


def _this_week(state: DemoState, count: int) -> Any:
    """``count`` customers who signed up in the last seven days, :data:`NEW_PLAN_SHARE` of them on the plan
    launched after the retraining."""
    from datetime import UTC, datetime

    from mlpilot.demo.data import make_churn

    today = np.datetime64(datetime.now(UTC).date(), "D")
    week = make_churn(count, seed=state.seed + 9, start=today - 7, span_days=7)
    return with_new_plan(week, NEW_PLAN_SHARE, seed=state.seed + 9)


def _report_rollback(
    state: DemoState, info: Any, served: Counter[tuple[int, str]], broken: int, stable: int, took: float
) -> None:
    name = f"v{broken}"
    broken_total = sum(n for (_, v), n in served.items() if v == name)
    broken_failed = sum(n for (s, v), n in served.items() if v == name and _failed(s))
    stable_total = sum(n for (_, v), n in served.items() if v != name)
    # Requests that got no answer have no variant: counted against the stable version, to be safe.
    stable_failed = sum(n for (s, v), n in served.items() if v != name and _failed(s))
    rolled_back = info.spec.primary.version == stable and info.spec.candidate is None
    state.data["rollback"] = {
        "info": info,
        "served": served,
        "broken_requests": broken_total,
        "broken_failed": broken_failed,
        "stable_requests": stable_total,
        "stable_failed": stable_failed,
        "seconds": took,
    }
    state.console.print(
        f"[bold]{'rolled back automatically' if rolled_back else 'NOT rolled back'}[/bold] after {took:.0f} s. "
        f"Callers on v{stable}: {stable_total:,} requests, [bold]{stable_failed} failed[/bold]; callers routed to "
        f"v{broken} before the rollback: {broken_total:,} requests, {broken_failed:,} errors (its {NEW_PLAN!r} "
        "plan customers)"
    )
