"""Closing the loop: retrain on the labelled recent traffic, gate the new version, canary it through the
control plane until the analysis promotes it; then plant a broken version and watch the automatic rollback.

The control plane (REST API and rollout controller) and a data plane following it run in threads of this
process (:mod:`mlpilot.demo.planes`); callers send one-row requests keyed by customer id from a few threads;
labels are posted back to the control plane as they "arrive", so the analysis can compare online accuracy.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlpilot.demo.data import FEATURES, TARGET
from mlpilot.demo.state import ENDPOINT, EXPERIMENT, MODEL_NAME, SERVICE, DemoState, progress
from mlpilot.demo.train import BROKEN_REGIONS, evaluate, make_broken, make_candidates
from mlpilot.errors import MlpilotError

__all__ = ["Traffic", "step_canary", "step_retrain", "step_rollback"]

#: Canary steps short enough for a demo: 25% then 50% of traffic, at least 4 s and 100 canary requests each.
STEPS = [25.0, 50.0, 100.0]
MIN_STEP_SECONDS = 4.0
MIN_STEP_REQUESTS = 100
#: Callers sending requests while the rollouts run.
CALLERS = 4


@dataclass
class Traffic:
    """Threads sending one-row predictions for ``customers`` to a data plane until stopped.

    Each request carries the customer id as its sticky assignment key. Every answer is counted by status and
    variant (a request that got no answer at all counts as status 0 of variant ``?``); answered predictions are
    queued with the customer's true label, to be posted as outcomes.
    """

    url: str
    endpoint: str
    customers: Any
    by_id: bool
    threads: int = CALLERS
    counts: Counter[tuple[int, str]] = field(default_factory=Counter)
    _outcomes: list[Any] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _bodies(self) -> list[tuple[str, bytes, int]]:
        import orjson

        ids = self.customers["customer_id"].tolist()
        truth = self.customers[TARGET].tolist()
        if self.by_id:
            rows: list[dict[str, Any]] = [{"customer_id": int(c)} for c in ids]
        else:
            rows = self.customers[FEATURES].to_dict(orient="records")
        return [
            (str(c), orjson.dumps({"instances": [row]}), int(y)) for c, row, y in zip(ids, rows, truth, strict=True)
        ]

    def _work(self, seed: int, bodies: list[tuple[str, bytes, int]]) -> None:
        import httpx

        from mlpilot.deploy import Outcome

        order = np.random.default_rng(seed).permutation(len(bodies))
        path = f"/v1/models/{self.endpoint}:predict"
        with httpx.Client(base_url=self.url, timeout=30) as http:
            i = 0
            while not self._stop.is_set():
                key, body, label = bodies[order[i % len(order)]]
                i += 1
                headers = {"content-type": "application/json", "x-mlpilot-key": key}
                try:
                    response = http.post(path, content=body, headers=headers)
                except httpx.HTTPError:
                    with self._lock:
                        self.counts[(0, "?")] += 1
                    continue
                variant = response.headers.get("x-mlpilot-variant", "?")
                outcome = None
                if response.status_code == 200:
                    prediction = response.json()["predictions"][0]
                    outcome = Outcome(variant=variant, prediction=prediction, label=label)
                with self._lock:
                    self.counts[(response.status_code, variant)] += 1
                    if outcome is not None:
                        self._outcomes.append(outcome)

    def start(self) -> Traffic:
        bodies = self._bodies()
        for i in range(self.threads):
            worker = threading.Thread(target=self._work, args=(i, bodies), name=f"demo-traffic-{i}", daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(30)

    def take_outcomes(self) -> list[Any]:
        with self._lock:
            taken, self._outcomes = self._outcomes, []
        return taken

    def snapshot(self) -> Counter[tuple[int, str]]:
        with self._lock:
            return Counter(self.counts)


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
    console.print(
        f"registered [bold]{MODEL_NAME} version {version.version}[/bold] ({best['name']}); next: the gate and a canary"
    )


def _concat(*frames: Any) -> Any:
    import pandas as pd

    return pd.concat([f[[*FEATURES, TARGET]] for f in frames], ignore_index=True)


# -- canary -------------------------------------------------------------------------------------------------
@dataclass
class Rollout:
    """The planes and the traffic the canary and rollback steps share."""

    control: Any
    plane: Any
    operator: Any
    traffic: Traffic

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
    from mlpilot.deploy.dataplane import build_data_plane, serve_in_thread
    from mlpilot.serving import RegistrySource

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
        log_url=state.client.settings.home.resolve() / "predictions",
        serve_options={"inference_threads": 2},
        features={ENDPOINT: SERVICE} if by_id else None,
        features_online_url=state.features.online_url if by_id else None,
    )
    running = serve_in_thread(plane)
    traffic = Traffic(running.url, ENDPOINT, state.data["fresh"], by_id=by_id).start()
    state.console.print(
        f"control plane {control.url} (REST API + rollout controller); data plane {running.url} following it; "
        f"{CALLERS} callers sending one-row requests by customer id"
    )
    return Rollout(control, running, operator, traffic)


def _watch(
    state: DemoState, rollout: Rollout, done: Callable[[Any], bool], *, timeout: float = 120.0
) -> tuple[Any, float]:
    """Post labels, print every revision the controller (or anyone) writes, show the live analysis; until
    ``done(info)``. Returns the final info and the seconds it took."""
    deployments = state.client.deployments
    seen = deployments.get(ENDPOINT).revision - 1
    started = time.monotonic()
    last_look = 0.0
    with state.console.status("analysing") as status:
        while True:
            info = deployments.get(ENDPOINT)
            # Labels of answers from versions the deployment no longer has (before a switch) have nowhere to go.
            live = {v.name for v in info.spec.variants}
            outcomes = [o for o in rollout.traffic.take_outcomes() if o.variant in live]
            if outcomes:
                _post(rollout, outcomes)
            for entry in deployments.history(ENDPOINT, after_revision=seen):
                seen = entry.revision
                elapsed = time.monotonic() - started
                state.console.print(
                    f"  {elapsed:5.1f} s  rev {entry.revision}  [bold]{entry.action}[/bold] by {entry.actor}: "
                    f"{_weights(entry.spec)}" + (f" — {entry.reason}" if entry.reason else "")
                )
            info = deployments.get(ENDPOINT)
            if done(info):
                return info, time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise MlpilotError(f"the rollout did not finish within {timeout:.0f} s: {info.spec.message}")
            if time.monotonic() - last_look > 1.0:
                report = deployments.analyze(ENDPOINT)
                counts = rollout.traffic.snapshot()
                per = ", ".join(
                    f"{v} {sum(n for (_, w), n in counts.items() if w == v):,}" for v in sorted({w for _, w in counts})
                )
                status.update(f"analysis: {report.action} — {report.reason[:90]} | requests {per}")
                last_look = time.monotonic()
            time.sleep(0.25)


def _post(rollout: Rollout, outcomes: list[Any]) -> None:
    """Post labels to the control plane; a batch naming a variant that left the deployment meanwhile (the
    controller switched between our read and the post) is filtered again and re-sent once."""
    from mlpilot.errors import InvalidInputError

    try:
        rollout.operator.deployments.record_outcomes(ENDPOINT, outcomes)
    except InvalidInputError:
        live = {v.name for v in rollout.operator.deployments.get(ENDPOINT).spec.variants}
        kept = [o for o in outcomes if o.variant in live]
        if kept:
            rollout.operator.deployments.record_outcomes(ENDPOINT, kept)


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


def step_canary(state: DemoState) -> None:
    from mlpilot.deploy import AnalysisConfig
    from mlpilot.errors import ConflictError

    console = state.console
    retrained = state.data.get("retrained")
    if retrained is None or not state.embedded:
        state.skip("the canary")
        return
    champion = state.client.get_model_version(MODEL_NAME, "champion")
    _create_endpoint(state, champion.version)
    holdout = state.data["holdout"]
    gate = state.deployments.check_gate(
        ENDPOINT, retrained.version, holdout=(holdout[FEATURES], holdout[TARGET].to_numpy())
    )
    console.print(f"gate for v{retrained.version} against v{champion.version}:")
    for check in gate.checks:
        mark = "[green]pass[/green]" if check.passed else "[red]FAIL[/red]"
        console.print(f"  {mark} {check.name}: {check.detail}")
    if not gate.passed:
        raise ConflictError(f"the gate refused v{retrained.version}", gate=gate.to_dict())
    rollout = state.data["rollout"] = _start_planes(state)
    # A retrained model is *meant* to predict differently after drift: judge it on errors, latency and online
    # accuracy from the labels posted back, not on whether its predictions moved.
    analysis = AnalysisConfig(
        min_samples=100, min_labels=100, require_labels=True, on_prediction_shift="ignore", latency_tolerance=0.5
    )
    before = rollout.traffic.snapshot()
    state.deployments.start_canary(
        ENDPOINT,
        retrained.version,
        analysis=analysis,
        holdout=(holdout[FEATURES], holdout[TARGET].to_numpy()),
        actor="demo",
        reason=f"v{retrained.version} retrained on labelled traffic after drift ({_drift(state)})",
    )
    console.print(
        f"canary v{retrained.version}: steps {', '.join(f'{s:g}%' for s in STEPS)}, each at least "
        f"{MIN_STEP_SECONDS:g} s and {MIN_STEP_REQUESTS} canary requests; labels posted back as they arrive"
    )
    info, took = _watch(state, rollout, lambda i: i.spec.state == "stable")
    _wait_applied(rollout, info.revision)
    after = rollout.traffic.snapshot()
    served = after - before
    failed = sum(n for (s, _), n in served.items() if _failed(s))
    now = state.client.get_model_version(MODEL_NAME, "champion")
    state.data["canary"] = {"info": info, "served": served, "failed": failed, "seconds": took}
    verdict = "promoted" if info.spec.primary.version == retrained.version else "rolled back"
    console.print(
        f"[bold]{verdict}[/bold] in {took:.0f} s: {sum(served.values()):,} requests, {failed} failed; "
        f"{MODEL_NAME}@champion → version {now.version}"
    )


# -- a broken version ---------------------------------------------------------------------------------------
def step_rollback(state: DemoState) -> None:
    from mlpilot.deploy import AnalysisConfig

    console = state.console
    rollout: Rollout | None = state.data.pop("rollout", None)
    if rollout is None:
        state.skip("the rollback")
        return
    try:
        stable = state.client.deployments.get(ENDPOINT).spec.primary.version
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
        state.data["broken"] = version
        console.print(
            f"registered [bold]{MODEL_NAME} version {version.version}[/bold]: [red]a deliberately broken build "
            "planted by the demo[/red]: fitted on the NA and EU export only, its encoder raises on APAC and LATAM "
            "customers (about 30% of requests)"
        )
        analysis = AnalysisConfig(min_samples=100, min_labels=100, on_prediction_shift="ignore", latency_tolerance=0.5)
        before = rollout.traffic.snapshot()
        state.deployments.start_canary(
            ENDPOINT,
            version.version,
            analysis=analysis,
            skip_gate=True,
            actor="demo",
            reason="planted broken build, pushed past the gate on purpose to show the automatic rollback",
        )
        console.print(f"canary v{version.version} (skipping the gate, as a rushed hotfix would):")
        info, took = _watch(state, rollout, lambda i: i.spec.state == "stable")
        _wait_applied(rollout, info.revision)
        time.sleep(0.5)  # requests in flight at the switch finish on the version that took them
        served = rollout.traffic.snapshot() - before
    finally:
        rollout.close()
    _report_rollback(state, info, served, version.version, stable, took)


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
        f"the broken v{broken} before the rollback: {broken_total:,} requests, {broken_failed:,} errors "
        "(its APAC and LATAM customers)"
    )
