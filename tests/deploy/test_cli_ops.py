"""``mlpilot deploy`` advance, release-standby, outcomes, history, events, promote --force and delete: over the
embedded store, and against a real server with ``--url``; errors are one line with the error's exit code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import mlpilot
from mlpilot.cli.context import settings
from mlpilot.cli.main import cli

from .conftest import log_tiny_models


@pytest.fixture(autouse=True)
def _fresh_settings() -> None:
    settings.cache_clear()


@pytest.fixture
def models() -> None:
    pytest.importorskip("sklearn")
    client = mlpilot.Client()
    log_tiny_models(client.registry, client.artifacts, [0.9, 0.91, 0.92])
    client.close()


def invoke(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["deploy", *args], input=stdin)
    return result.exit_code, result.output


def test_a_canary_is_advanced_to_its_promotion_and_its_standby_released(models: None) -> None:
    assert invoke("create", "churn", "--model", "churn", "--version", "1", "--retention-seconds", "0.001")[0] == 0
    assert invoke("canary", "churn", "2", "--steps", "10,50,100")[0] == 0
    code, out = invoke("advance", "churn", "-r", "dashboards look fine", "--json")
    assert code == 0, out
    assert [(v["version"], v["weight"]) for v in json.loads(out)["spec"]["variants"]] == [(1, 50.0), (2, 50.0)]
    code, out = invoke("advance", "churn", "-r", "all good")
    assert code == 0, out
    assert "promoted" in out
    code, out = invoke("release-standby", "churn", "--json")
    assert code == 0, out
    assert [v["role"] for v in json.loads(out)["spec"]["variants"]] == ["primary"]
    code, out = invoke("release-standby", "churn")
    assert (code, out.strip()) == (0, "nothing to release: no standby, or its retention window has not ended")
    code, out = invoke("advance", "churn")
    assert code == 4
    assert out == "error: only a running canary advances; the deployment is stable\n"
    code, out = invoke("history", "churn", "--after-revision", "1", "--json")
    history = json.loads(out)
    assert [(h["action"], h["actor"]) for h in history] == [
        ("canary_started", "cli"),
        ("traffic_shifted", "cli"),
        ("promoted", "cli"),
        ("standby_released", "cli"),
    ]
    assert history[1]["reason"] == "dashboards look fine"
    code, out = invoke("history", "churn")
    assert (code, out.count("cli")) == (0, 5)  # a table of five revisions, one per line


def test_outcomes_are_posted_from_a_file(models: None, tmp_path: Path) -> None:
    invoke("create", "churn", "--model", "churn", "--version", "1")
    invoke("ab", "churn", "2", "--split", "50")
    rows = tmp_path / "outcomes.csv"
    rows.write_text("key,variant,value\n,v1,1\n,v2,0\n,v2,1\n")
    code, out = invoke("outcomes", "churn", str(rows), "--json")
    assert code == 0, out
    assert json.loads(out) == {"v1": 1, "v2": 2}
    assert invoke("analyze", "churn", "--json")[0] == 0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"variant": "v1", "value": 1}, {"variant": "v9", "value": 1}]))
    code, out = invoke("outcomes", "churn", str(bad))
    assert (code, out) == (2, "error: outcomes[1].variant: 'v9' is not a variant of 'churn'\n")
    bad.write_text(json.dumps([{"variant": "v1", "revenue": 3}]))
    code, out = invoke("outcomes", "churn", str(bad))
    assert code == 2
    assert out.startswith("error: outcomes[0]")
    assert out.count("\n") == 1


def test_a_preview_is_promoted_by_force_with_a_reason_and_the_events_say_so(models: None) -> None:
    invoke("create", "churn", "--model", "churn", "--version", "1")
    assert invoke("blue-green", "churn", "2", "-r", "retrained")[0] == 0
    code, out = invoke("promote", "churn")
    assert code == 4
    assert out.startswith("error: v2 is not promoted: it has not been verified;")
    assert out.count("\n") == 1
    code, out = invoke("promote", "churn", "--force")
    assert (code, out) == (2, "error: reason: a forced promotion needs a reason (it is recorded)\n")
    code, out = invoke("promote", "churn", "--force", "-r", "verified on staging")
    assert code == 0, out
    code, out = invoke("events", "churn", "--json")
    events = json.loads(out)
    assert [e["kind"] for e in events] == ["deployment.created", "deployment.blue_green_started", "deployment.promoted"]
    assert (events[-1]["payload"]["forced"], events[-1]["actor"]) == (True, "cli")
    code, out = invoke("events", "churn")
    assert (code, out.count("cli")) == (0, 3)  # a table, one line per event


def test_delete_needs_confirmation(models: None) -> None:
    invoke("create", "churn", "--model", "churn", "--version", "1")
    code, _ = invoke("delete", "churn", stdin="n\n")
    assert code == 1  # aborted
    assert invoke("show", "churn")[0] == 0
    code, out = invoke("delete", "churn", "--yes", "-r", "endpoint retired")
    assert (code, out.strip()) == (0, "deleted churn")
    assert invoke("show", "churn")[0] == 3
    client = mlpilot.Client()
    try:
        from mlpilot.store.audit import list_events

        with client.store.read() as session:
            deleted = list_events(session, subject="deployments/churn", after_id=0, limit=100)[-1]
        assert (deleted.kind, deleted.actor, deleted.payload) == (
            "deployment.deleted",
            "cli",
            {"reason": "endpoint retired"},
        )
    finally:
        client.close()


def test_the_same_commands_against_a_server(live_server: Any, tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    log_tiny_models(live_server.client.registry, live_server.client.artifacts, [0.9, 0.91])
    url = ("--url", live_server.url)
    assert invoke("create", "churn", "--model", "churn", "--version", "1", *url)[0] == 0
    assert invoke("ab", "churn", "2", *url)[0] == 0
    rows = tmp_path / "outcomes.jsonl"
    rows.write_text('{"key": "user-1", "value": 1}\n{"key": "user-2", "value": 0}\n')
    code, out = invoke("outcomes", "churn", str(rows), "--json", *url)
    assert code == 0, out
    assert sum(json.loads(out).values()) == 2
    code, out = invoke("history", "churn", "--json", *url)
    assert [h["action"] for h in json.loads(out)] == ["created", "ab_started"]
    code, out = invoke("events", "churn", "--after-id", "0", "-n", "1", "--json", *url)
    assert [e["kind"] for e in json.loads(out)] == ["deployment.created"]
    code, out = invoke("advance", "churn", *url)
    assert code == 4
    assert out == "error: only a running canary advances; the deployment is ab_testing\n"
    code, out = invoke("verify", "churn", "--data-plane", "ftp://serving:8080", *url)
    assert code == 2  # the REST body names the field
    assert out.startswith("error: url:")
    code, out = invoke("verify", "churn", "--data-plane", "http://127.0.0.1:9", *url)
    assert (code, out) == (4, "error: only a blue-green preview is verified; the deployment is ab_testing\n")
    code, out = invoke("delete", "churn", "--yes", *url)
    assert code == 0, out
    assert invoke("show", "churn", *url)[0] == 3
