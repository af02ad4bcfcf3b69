"""No request fails at any switch: a load generator runs through every change of a deployment's routing — a
canary's start, each step, pause and resume, its promotion, the standby's release after the retention window,
a rollback after that (the old version loads again), a shadow's start and promotion, an A/B test's start and
rollback, a canary rolled back by hand — and every request must be answered with a 200: no connection error,
no 5xx, no 503. A real control plane and data plane on 127.0.0.1 (see :mod:`tests.deploy.e2e`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from mlpilot.deploy import ABConfig, CanaryConfig

from .e2e import GOOD, GOOD_TOO, Env, Load, deployment, follow, model_loads, plane, start_env, wait

pytest.importorskip("uvicorn")
pytest.importorskip("cloudpickle")
pytestmark = pytest.mark.slow

#: Steps the controller never takes on its own: the test moves the canary by hand.
MANUAL = CanaryConfig(steps=[10, 30, 60, 100], min_step_seconds=3600, min_step_requests=10**6, max_step_seconds=7200)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with start_env(tmp_path_factory.mktemp("control-plane")) as started:
        yield started


def _served_after(load: Load, variants: set[str], n: int = 40) -> None:
    """Wait for ``n`` answers to requests sent from now on (the switch is applied), then check that they came
    from ``variants`` only."""
    since = time.time()
    wait(lambda: len(load.variants_since(since)) >= n, what=f"{n} answers after the switch")
    recent = set(load.variants_since(since))
    assert recent <= variants, f"answered by {recent}, expected {variants}"


def test_canary_switches_and_standby_release_fail_no_request(env: Env) -> None:
    name = deployment(env, create={"retention_seconds": 1.0})
    with plane(env, name) as running, Load(running.url, name, threads=4) as load:
        _served_after(load, {"v1"})  # the new deployment serves from its first request
        env.deployments.start_canary(name, GOOD_TOO, canary=MANUAL, reason="start")
        follow(env, running, name)
        wait(lambda: load.count(variant="v2") > 20, what="traffic on the canary")
        env.deployments.pause(name, reason="look closer")
        follow(env, running, name)
        _served_after(load, {"v1", "v2"})
        env.deployments.resume(name, reason="looks fine")
        follow(env, running, name)
        _served_after(load, {"v1", "v2"})
        for weight in (30, 60):
            candidate = env.deployments.advance(name, reason="step").spec.candidate
            assert candidate is not None
            assert candidate.weight == weight
            follow(env, running, name)
            _served_after(load, {"v1", "v2"})
        promoted = env.deployments.advance(name, reason="last step passed")
        assert (promoted.spec.state, promoted.spec.primary.version) == ("stable", GOOD_TOO)
        follow(env, running, name)
        _served_after(load, {"v2"})
        warm = model_loads(running.url, name)
        # the controller releases the standby once its retention window (1 s) has passed
        wait(
            lambda: env.deployments.history(name)[-1].action == "standby_released",
            what=lambda: f"the standby's release: {[h.action for h in env.deployments.history(name)]}",
        )
        follow(env, running, name)
        _served_after(load, {"v2"})
        released = running.plane.server.repository.versions(name)
        # a rollback after the release loads v1 again, next to v2, before switching to it
        env.deployments.rollback(name, reason="after all")
        follow(env, running, name)
        _served_after(load, {"v1"})
        cold = model_loads(running.url, name)
    load.assert_clean()
    assert warm == 2  # every switch up to the promotion was a route swap between two loaded versions
    assert released == [GOOD_TOO]
    assert cold == 3
    actors = [(h.action, h.actor) for h in env.deployments.history(name)]
    assert ("standby_released", "controller") in actors


def test_shadow_ab_and_canary_rollback_switches_fail_no_request(env: Env) -> None:
    name = deployment(env)
    with plane(env, name) as running, Load(running.url, name, threads=4, key_via="header") as load:
        # a shadow starts and is promoted
        env.deployments.start_shadow(name, GOOD_TOO, mirror=100)
        follow(env, running, name)
        wait(lambda: (env.deployments.analyze(name).shadow or {}).get("paired", 0) >= 50, what="mirrored pairs")
        _served_after(load, {"v1"})  # callers never see the shadow
        env.deployments.promote(name, reason="the shadow agreed")
        follow(env, running, name)
        _served_after(load, {"v2"})
        # an A/B test of v1 against it starts and is rolled back
        env.deployments.start_ab(name, GOOD, ab=ABConfig(split=50))
        follow(env, running, name)
        wait(lambda: load.count(variant="v1") > 20, what="traffic on B")
        env.deployments.rollback(name, reason="B lost")
        follow(env, running, name)
        _served_after(load, {"v2"})
        # a canary of v1 takes a step and is rolled back by hand
        env.deployments.start_canary(name, GOOD, canary=MANUAL)
        follow(env, running, name)
        env.deployments.advance(name, reason="step")
        follow(env, running, name)
        wait(lambda: load.count(variant="v1") > 60, what="traffic on the canary")
        env.deployments.rollback(name, reason="changed our minds")
        follow(env, running, name)
        _served_after(load, {"v2"})
        loads = model_loads(running.url, name)
    load.assert_clean()
    # v1 at the start, v2 for the shadow, v1 again for the canary (it was retired when the A/B test ended): every
    # other switch was a route swap between loaded versions
    assert loads == 3
    actions = [h.action for h in env.deployments.history(name)]
    assert actions.count("rolled_back") == 2
