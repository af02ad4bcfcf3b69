"""``mlpilot features ...`` end to end in a project folder: plan, apply, history, materialize, get-online, parity."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mlpilot.cli.context import settings
from mlpilot.cli.main import cli

from .conftest import hours, table

pq = pytest.importorskip("pyarrow.parquet")

FEATURES_PY = """
from datetime import timedelta
from mlpilot.features import Entity, Feature, FeatureService, FeatureView, ParquetSource

customer = Entity("customer", join_keys=["cid"])
txn = FeatureView(
    "txn", [customer], ParquetSource("data/txn.parquet"), timestamp_field="et", ttl=timedelta(days={ttl}),
    features=[Feature("amount", "float64"), Feature("plan", "string")],
)
churn = FeatureService("churn", [txn])
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    settings.cache_clear()
    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    pq.write_table(
        table(cid=[1, 1, 2], et=[hours(0), hours(5), hours(1)], amount=[1.0, 2.0, 3.0], plan=["a", "b", "c"]),
        folder / "data" / "txn.parquet",
    )
    (folder / "features.py").write_text(FEATURES_PY.format(ttl=7))
    monkeypatch.chdir(folder)
    yield folder
    settings.cache_clear()


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["features", *args])
    return result.exit_code, result.output


def test_plan_apply_and_history(project: Path) -> None:
    code, out = invoke("plan")
    assert code == 0, out
    assert "+" in out
    assert "feature_view" in out
    assert "txn" in out
    code, out = invoke("plan", "--json")
    assert json.loads(out)["added"][1] == {
        "kind": "feature_view",
        "name": "txn",
        "fields": json.loads(out)["added"][1]["fields"],
    }
    code, out = invoke("apply")
    assert code == 0, out
    assert "applied as version 1" in out
    assert "no changes" in invoke("plan")[1]
    (project / "features.py").write_text(FEATURES_PY.format(ttl=3))
    code, out = invoke("apply", "--json")
    doc = json.loads(out)
    assert doc["version"] == 2
    assert doc["changed"] == [{"kind": "feature_view", "name": "txn", "fields": ["ttl_seconds"]}]
    code, out = invoke("history", "--json")
    assert [h["version"] for h in json.loads(out)] == [2, 1]
    code, out = invoke("apply", "--expected-version", "1")
    assert code == 4
    assert out.startswith("error: feature registry changed since it was planned")


def test_bad_definitions_fail_in_one_error_and_apply_nothing(project: Path) -> None:
    (project / "features.py").write_text(
        FEATURES_PY.format(ttl=7).replace('timestamp_field="et"', 'timestamp_field="ts"')
    )
    code, out = invoke("apply")
    assert code == 2
    assert out.startswith("error: feature view 'txn': timestamp_field 'ts' is not a column of its source")
    code, out = invoke("history", "--json")
    assert json.loads(out) == []
    code, out = invoke("plan", "-f", "nowhere.py")
    assert code == 2
    assert out == "error: definitions: no such file nowhere.py\n"


def test_materialize_then_get_online(project: Path) -> None:
    assert invoke("apply")[0] == 0
    code, out = invoke("materialize", "--end", hours(6).isoformat(), "--json")
    assert code == 0, out
    assert json.loads(out)[0]["rows_written"] == 2
    code, out = invoke("materialize", "--end", hours(6).isoformat())
    assert code == 0, out
    assert "txn" in out
    # registered definitions, default online store; the rows are from 2024, so the TTL applies at "now": use
    # the definitions file with its own store to read a fresh push instead
    code, out = invoke("get-online", "-e", "cid=1", "-e", "cid=2", "-s", "churn", "--json")
    assert code == 0, out
    assert json.loads(out) == {"cid": [1, 2], "amount": [None, None], "plan": [None, None]}
    from mlpilot.features import load_definitions, open_online_store, push
    from mlpilot.features.online import default_online_url

    defs = load_definitions(project / "features.py")
    from datetime import UTC, datetime

    with open_online_store(default_online_url(settings().home)) as store:
        push(defs.view("txn"), [{"cid": 2, "et": datetime.now(UTC), "amount": 9.5, "plan": "z"}], store=store)
    code, out = invoke("get-online", "-e", "cid=2", "-F", "txn:amount", "--json")
    assert json.loads(out) == {"cid": [2], "amount": [9.5]}
    code, out = invoke("get-online", "-e", "cid=2", "-F", "txn", "-f", "features.py")
    assert code == 0
    assert "9.5" in out
    code, out = invoke("get-online", "-e", "cid=2", "-F", "nope")
    assert code == 2
    assert "unknown feature view 'nope'" in out
    code, out = invoke("get-online", "-e", "cid", "-F", "txn")
    assert code == 2
    assert "--entity: expected key=value" in out


def test_parity_from_a_lookup_log(project: Path) -> None:
    from mlpilot.features import FeatureLookup, load_definitions, materialize, open_online_store, push
    from mlpilot.features._codec import to_us

    defs = load_definitions(project / "features.py")
    with open_online_store(f"sqlite:///{project / 'online.db'}") as store:
        materialize([defs.view("txn")], end=hours(6), now=hours(6), store=store)
        lookup = FeatureLookup(defs.service("churn"), store=store, definitions=defs, log_url=str(project / "log"))
        lookup.lookup([{"cid": 1}, {"cid": 2}], now_us=to_us(hours(6), "t"))
        lookup.close()
    code, out = invoke("parity", "--log", str(project / "log"), "--check", "--json")
    assert code == 0, out
    assert json.loads(out)["mismatches"] == 0
    with open_online_store(f"sqlite:///{project / 'online.db'}") as store:
        push(defs.view("txn"), [{"cid": 2, "et": hours(6), "amount": -5.0, "plan": "c"}], store=store)
        lookup = FeatureLookup(defs.service("churn"), store=store, definitions=defs, log_url=str(project / "log"))
        lookup.lookup([{"cid": 2}], now_us=to_us(hours(7), "t"))
        lookup.close()
    code, out = invoke("parity", "--log", str(project / "log"))
    assert code == 0
    assert "1 mismatches" in out
    assert "-5.0" in out
    assert invoke("parity", "--log", str(project / "log"), "--check")[0] == 1


def test_against_a_server(project: Path, live_server: Any) -> None:
    code, out = invoke("apply", "--url", live_server.url)
    assert code == 0, out
    assert live_server.services.features.load_specs().version == 1
    code, out = invoke("plan", "--url", live_server.url, "--json")
    assert json.loads(out)["base_version"] == 1
    code, out = invoke("get-online", "--url", live_server.url, "-e", "cid=1", "-F", "txn:plan", "--json")
    assert code == 0, out
    assert json.loads(out) == {"cid": [1], "plan": [None]}
    code, out = invoke("get-online", "--url", live_server.url, "-e", "cid=1", "-F", "nope")
    assert code == 2
    assert "unknown feature view 'nope'" in out
