"""Loading definitions from a user's features.py or a YAML file."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from mlpilot.errors import InvalidInputError
from mlpilot.features import get_training_set, load_definitions, plan

from .conftest import hours, table

pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    pq.write_table(table(cid=[1, 1], et=[hours(0), hours(3)], amount=[1.0, 3.0]), tmp_path / "data" / "txn.parquet")
    return tmp_path


PYTHON_DEFS = """
from datetime import timedelta
from mlpilot.features import Entity, Feature, FeatureService, FeatureView, ParquetSource

customer = Entity("customer", join_keys=["cid"])
txn = FeatureView(
    "txn", [customer], ParquetSource("data/*.parquet"), timestamp_field="et", ttl=timedelta(days=7),
    features=[Feature("amount", "float64")],
)
churn = FeatureService("churn", [txn])
"""

YAML_DEFS = """
entities:
  - name: customer
    join_keys: [cid]
feature_views:
  - name: txn
    entities: [customer]
    source: {parquet: "data/*.parquet"}
    timestamp_field: et
    ttl: 7d
    features:
      amount: float64
feature_services:
  - name: churn
    features: [txn]
"""


def test_python_and_yaml_give_the_same_specs(project: Path) -> None:
    (project / "features.py").write_text(PYTHON_DEFS)
    (project / "features.yaml").write_text(YAML_DEFS)
    from_py = load_definitions(project / "features.py")
    from_yaml = load_definitions(project / "features.yaml")
    assert from_py.to_specs() == from_yaml.to_specs()
    assert from_yaml.views["txn"].ttl == timedelta(days=7)


def test_relative_paths_resolve_next_to_the_file(project: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    (project / "features.yaml").write_text(YAML_DEFS)
    elsewhere = tmp_path_factory.mktemp("cwd")
    script = textwrap.dedent(
        f"""
        import pyarrow as pa
        from datetime import datetime
        from mlpilot.features import get_training_set, load_definitions
        defs = load_definitions({str(project / "features.yaml")!r})
        at = pa.array([datetime(2024, 1, 1, 4)], pa.timestamp("us"))
        entity_df = pa.table({{"cid": [1], "event_timestamp": at}})
        result = get_training_set(entity_df, defs.service("churn"), definitions=defs)
        print(result.data.column("amount").to_pylist())
        """
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=elsewhere, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[3.0]"


def test_loaded_definitions_plan_and_join(project: Path) -> None:
    (project / "features.py").write_text(PYTHON_DEFS)
    defs = load_definitions(project / "features.py")
    assert plan([], defs).render() == "+ entity customer\n+ feature_view txn\n+ feature_service churn"
    result = get_training_set(table(cid=[1], event_timestamp=[hours(1)]), ["txn:amount"], definitions=defs)
    assert result.data.column("amount").to_pylist() == [1.0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (YAML_DEFS.replace("    ttl: 7d", "    tll: 7d"), r"feature_views\[0\]\.tll: unknown key"),
        (YAML_DEFS.replace("ttl: 7d", "ttl: a week"), r"feature_views\[0\]\.ttl: expected a duration"),
        (
            YAML_DEFS.replace("    timestamp_field: et\n", ""),
            r"feature_views\[0\]\.timestamp_field: required",
        ),
        (YAML_DEFS.replace("amount: float64", "amount: double"), "dtype must be one of"),
        ("entities: {customer: x}", "entities: expected a list"),
        ("feature_views: [\n", "not valid YAML"),
    ],
)
def test_bad_yaml_is_refused_with_its_path(project: Path, text: str, message: str) -> None:
    (project / "features.yaml").write_text(text)
    with pytest.raises(InvalidInputError, match=message):
        load_definitions(project / "features.yaml")


def test_errors_in_features_py_name_the_file(project: Path) -> None:
    (project / "features.py").write_text("from mlpilot.features import Feature\nx = Feature('a', 'float')\n")
    with pytest.raises(InvalidInputError, match=r"features\.py: feature 'a': dtype must be one of"):
        load_definitions(project / "features.py")
    (project / "features.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(InvalidInputError, match="RuntimeError: boom"):
        load_definitions(project / "features.py")
    with pytest.raises(InvalidInputError, match=r"expected a \.py, \.yaml or \.yml file"):
        load_definitions(project / "data" / "txn.parquet")
