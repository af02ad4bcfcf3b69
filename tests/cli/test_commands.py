from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import mlpilot
from mlpilot.cli.context import settings
from mlpilot.cli.main import cli


@pytest.fixture(autouse=True)
def _fresh_settings() -> None:
    settings.cache_clear()


@pytest.fixture
def populated() -> str:
    with mlpilot.start_run("exp", name="first", tags={"team": "growth"}) as run:
        run.log_params({"depth": 3})
        run.log_metric("auc", 0.91, step=0)
    version = mlpilot.log_model(lambda x: x + 1, "plus", input_example=np.zeros((2, 2)), run=run)
    mlpilot.set_alias("plus", "champion", version.version)
    return run.id


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_runs_list_and_show(populated: str) -> None:
    code, out = invoke("runs", "list", "-f", "metrics.auc > 0.9", "--json")
    assert code == 0
    assert [r["info"]["id"] for r in json.loads(out)["runs"]] == [populated]
    code, out = invoke("runs", "show", populated)
    assert code == 0
    assert "depth" in out
    assert "0.91" in out


def test_models_list_show_versions_and_aliases(populated: str) -> None:
    code, out = invoke("models", "list", "--json")
    assert code == 0
    assert json.loads(out)[0]["aliases"] == {"champion": 1}
    assert invoke("models", "versions", "plus")[0] == 0
    code, out = invoke("models", "alias", "set", "plus", "challenger", "1")
    assert code == 0
    assert "plus@challenger → version 1" in out
    assert mlpilot.get_model_version("plus", "challenger").version == 1
    assert invoke("models", "alias", "rm", "plus", "challenger")[0] == 0
    code, out = invoke("models", "show", "plus", "--json")
    kinds = [e["kind"] for e in json.loads(out)["history"]]
    assert "model.alias_set" in kinds
    assert "model.alias_deleted" in kinds


def test_tokens_create_list_revoke() -> None:
    code, out = invoke("tokens", "create", "ci", "--role", "editor", "--json")
    assert code == 0
    secret = json.loads(out)["token"]
    code, out = invoke("tokens", "list", "--json")
    assert json.loads(out)[0]["name"] == "ci"
    assert secret not in out
    assert invoke("tokens", "revoke", "ci")[0] == 0
    assert json.loads(invoke("tokens", "list", "--json")[1])[0]["revoked_at"] is not None


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["runs", "show", "nope"], 3, "error: "),
        (["runs", "list", "-f", "metrics.auc >"], 2, "error: invalid filter"),
        (["models", "versions", "ghost"], 3, "error: "),
        (["models", "alias", "set", "ghost", "champion", "1"], 3, "error: "),
        (["tokens", "revoke", "ghost"], 3, "error: "),
        (["tokens", "create", "bad name!"], 2, "error: token name"),
    ],
)
def test_errors_are_one_line_with_a_non_zero_exit(args: list[str], code: int, fragment: str) -> None:
    # A real process: what a user sees, traceback or not.
    proc = subprocess.run(
        [sys.executable, "-m", "mlpilot.cli", *args], capture_output=True, text=True, env=dict(os.environ), timeout=120
    )
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.startswith(fragment), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_setting_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = dict(os.environ, MLPILOT_PORT="x")
    proc = subprocess.run(
        [sys.executable, "-m", "mlpilot.cli", "runs", "list"], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 78
    assert (
        proc.stderr.strip()
        == "error: MLPILOT_PORT: Input should be a valid integer, unable to parse string as an integer (got 'x')"
    )


def test_cli_against_a_remote_server(live_server: object) -> None:
    url = live_server.url  # type: ignore[attr-defined]
    client = live_server.client  # type: ignore[attr-defined]
    with client.start_run("remote-exp") as run:
        run.log_metric("loss", 0.5, step=1)
    code, out = invoke("runs", "list", "--url", url, "--json")
    assert code == 0
    assert json.loads(out)["runs"][0]["info"]["id"] == run.id
