"""``mlpilot monitor ...`` against the embedded store and ``$MLPILOT_HOME/predictions``, and against a server."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from mlpilot.cli.context import settings
from mlpilot.cli.main import cli
from tests.monitor.conftest import REGIONS, Platform, Threshold, features, truth


@pytest.fixture(autouse=True)
def _fresh_settings() -> None:
    settings.cache_clear()


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


@pytest.fixture
def home_log() -> Platform:
    """A model registered in the embedded store of $MLPILOT_HOME and 900 predictions in its log."""
    import mlpilot

    home = Path(os.environ["MLPILOT_HOME"]).resolve()
    train = features(1500, seed=41)
    mlpilot.log_model(Threshold(), "churn", input_example={k: v[:5] for k, v in train.items()},
                      training_data=train, flavor="pyfunc")  # fmt: skip
    platform = Platform(None, None, str(home / "predictions"), None, None)  # type: ignore[arg-type]
    platform.serve("churn", features(900, seed=42, income_shift=12.0), regions=np.resize(REGIONS, 900))
    return platform


def test_check_prints_a_table_writes_html_and_json(home_log: Platform, tmp_path: Path) -> None:
    code, out = invoke("monitor", "configure", "churn", "--segments", "region", "--window-rows", "5000")
    assert code == 0, out
    code, out = invoke("monitor", "check", "churn", "--last", "900", "--html", str(tmp_path / "r.html"))
    assert code == 0, out
    assert "drifted features: income" in out
    assert "income" in out
    assert "DRIFT" in out
    assert f"report: {tmp_path / 'r.html'}" in out.replace("\n", "")
    assert "<svg" in (tmp_path / "r.html").read_text(encoding="utf-8")
    code, out = invoke("monitor", "check", "churn", "--json")
    assert code == 0, out
    data = json.loads(out)
    assert data["drifted_features"] == ["income"]
    assert data["rows"] == 900
    code, out = invoke("monitor", "results", "--json")
    assert code == 0
    assert [r["endpoint"] for r in json.loads(out)] == ["churn"]
    code, out = invoke("monitor", "results", "churn")
    assert code == 0
    assert "income" in out


def test_labels_from_csv_then_segment_accuracy(home_log: Platform, tmp_path: Path) -> None:
    cols = features(900, seed=42, income_shift=12.0)
    labels = truth(cols, seed=43)
    eu = np.resize(REGIONS, 900) == "EU"
    labels = np.where(eu & (np.arange(900) % 2 == 0), 1 - labels, labels)
    csv = tmp_path / "labels.csv"
    lines = ["request_id,label", *(f"{rid},{lab}" for rid, lab in zip(home_log.served["churn"], labels, strict=True))]
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out = invoke("monitor", "labels", str(csv))
    assert code == 0, out
    assert "stored 900 label(s): churn 900" in out
    invoke("monitor", "configure", "churn", "--segments", "region")
    code, out = invoke("monitor", "check", "churn", "--json")
    data = json.loads(out)
    assert data["worst_segment"] == "region=EU"
    assert data["labeled_rows"] == 900


def test_unknown_ids_in_a_label_file_fail_in_one_line(home_log: Platform, tmp_path: Path) -> None:
    csv = tmp_path / "labels.csv"
    csv.write_text(f"request_id,label\n{home_log.served['churn'][0]},1\nmissing-id,0\n", encoding="utf-8")
    code, out = invoke("monitor", "labels", str(csv))
    assert code == 3
    assert out.startswith("error: request_id:")
    assert "missing-id" in out
    bad = tmp_path / "bad.csv"
    bad.write_text("id,value\n1,2\n", encoding="utf-8")
    code, out = invoke("monitor", "labels", str(bad))
    assert code == 2
    assert "expected columns" in out


def test_alert_commands(home_log: Platform) -> None:
    code, out = invoke("monitor", "alerts", "set", "drift", "--endpoint", "churn", "--kind", "drift",
                       "--threshold", "1")  # fmt: skip
    assert code == 0, out
    code, out = invoke("monitor", "alerts", "evaluate")
    assert code == 0, out
    assert "alert.fired drift: churn: drifted_features is 2" in out
    code, out = invoke("monitor", "alerts", "list", "--json")
    assert [(r["rule"]["name"], r["state"]) for r in json.loads(out)] == [("drift", "firing")]
    code, out = invoke("monitor", "alerts", "set", "bad", "--endpoint", "churn", "--kind", "latency_p99",
                       "--threshold", "1")  # fmt: skip
    assert code == 2
    assert "metrics_url" in out
    assert invoke("monitor", "alerts", "rm", "drift")[0] == 0
    code, out = invoke("monitor", "alerts", "rm", "drift")
    assert code == 3


def test_profile_and_bad_times(home_log: Platform) -> None:
    code, out = invoke("monitor", "profile", "churn", "1")
    assert code == 0, out
    assert "models/churn/1: computed profile of 1,500 rows" in out
    code, out = invoke("monitor", "profile", "churn", "1")
    assert "stored profile" in out
    code, out = invoke("monitor", "check", "churn", "--since", "yesterday-ish")
    assert code == 2
    assert "--since" in out
    code, out = invoke("monitor", "check", "ghost")
    assert code == 3
    assert "no prediction log" in out


def test_check_against_a_server(live_server: Any) -> None:
    log_url = Path(live_server.settings.home).resolve() / "predictions"
    train = features(1500, seed=44)
    live_server.client.log_model(Threshold(), "churn", input_example={k: v[:5] for k, v in train.items()},
                                 training_data=train, flavor="pyfunc")  # fmt: skip
    platform = Platform(None, None, str(log_url), None, None)  # type: ignore[arg-type]
    platform.serve("churn", features(600, seed=45, income_shift=12.0))
    code, out = invoke("monitor", "check", "churn", "--url", live_server.url, "--json")
    assert code == 0, out
    summary: dict[str, Any] = json.loads(out)
    assert summary["drifted_features"] == ["income"]
    assert live_server.services.monitor.latest_check("churn").id == summary["id"]


def test_sdk_log_labels_defaults_to_the_settings_store(home_log: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlpilot.errors import ConfigError
    from mlpilot.monitor import log_labels

    ids = home_log.served["churn"][:10]
    assert log_labels(ids, [1] * 10).endpoints == {"churn": 10}
    monkeypatch.setenv("MLPILOT_SERVER_URL", "http://127.0.0.1:9")
    with pytest.raises(ConfigError, match="MLPILOT_SERVER_URL"):
        log_labels(ids, [1] * 10)
