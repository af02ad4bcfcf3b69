"""log_model: what a version records (sample, requirements, lineage, aliases) and what it refuses early."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from mlpilot.artifacts import FsspecArtifactStore
from mlpilot.errors import InvalidInputError, MissingDependencyError
from mlpilot.registry import RegistryService, load_model, log_model, read_sample, sample_table
from mlpilot.registry.flavors.base import import_library
from mlpilot.store import Store
from mlpilot.tracking import TrackingService, start_run


def _blobs(artifacts: FsspecArtifactStore) -> list[Path]:
    return [p for p in Path(artifacts.root, "sha256").rglob("*") if p.is_file()]


def scale(x: Any) -> Any:
    return np.asarray(x, dtype=float) * 0.5


def test_sample_of_training_data_is_stored_as_parquet(
    registry: RegistryService, artifacts: FsspecArtifactStore, churn_frame: Any
) -> None:
    frame, _ = churn_frame
    version = log_model(
        lambda f: np.zeros(len(f)),
        "m",
        registry=registry,
        artifacts=artifacts,
        input_example=frame.head(3),
        training_data=frame,
    )
    assert version.sample_sha256 is not None
    sample = read_sample(version.sample_sha256, artifacts)
    assert sample.num_rows == len(frame)
    assert sample.column_names == ["tenure", "spend", "plan", "region"]
    assert sample.column("plan").to_pylist() == frame["plan"].tolist()


def test_sample_defaults_to_the_example_and_array_columns_are_numbered(
    registry: RegistryService, artifacts: FsspecArtifactStore
) -> None:
    example = np.arange(6.0).reshape(3, 2)
    version = log_model(scale, "m", registry=registry, artifacts=artifacts, input_example=example)
    assert version.sample_sha256 is not None
    sample = read_sample(version.sample_sha256, artifacts)
    assert sample.column_names == ["input_0", "input_1"]
    assert sample.column("input_1").to_pylist() == [1.0, 3.0, 5.0]


def test_large_training_data_is_sampled_to_ten_thousand_rows_deterministically() -> None:
    data = np.arange(25_000 * 2).reshape(25_000, 2)
    first, second = sample_table(data), sample_table(data)
    assert first.num_rows == 10_000
    assert first.equals(second)
    picked = first.column("input_0").to_numpy() // 2
    assert np.all(np.diff(picked) > 0)  # kept in the original order, no duplicates
    arrow = pa.table({"a": pa.array(np.arange(12_000))})
    assert sample_table(arrow).num_rows == 10_000
    assert sample_table({"a": np.arange(5), "b": np.ones((5, 2))}).column_names == ["a", "b_0", "b_1"]
    images = sample_table(np.zeros((4, 2, 2)))
    assert images.column_names == ["input"]
    assert images.column("input").type.list_size == 4


def test_requirements_metrics_tags_and_description(registry: RegistryService, artifacts: FsspecArtifactStore) -> None:
    version = log_model(
        scale,
        "m",
        registry=registry,
        artifacts=artifacts,
        input_example=[[1.0, 2.0]],
        metrics={"rmse": 0.25},
        tags={"team": "growth"},
        description="halves its input",
        requirements=["scipy>=1.11"],
    )
    assert version.flavor == "pyfunc"
    assert version.metrics == {"rmse": 0.25}
    assert version.tags == {"team": "growth"}
    assert version.description == "halves its input"
    assert any(r.startswith("numpy==") for r in version.requirements)
    assert any(r.startswith("mlpilot") for r in version.requirements)
    assert version.requirements[-1] == "scipy>=1.11"
    assert version.signature is not None
    assert [(s.name, s.dtype, s.shape) for s in version.signature.outputs] == [("output", "float64", [-1, 2])]


def test_active_run_links_lineage_and_datasets(store: Store, registry: RegistryService, tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    artifacts = FsspecArtifactStore(str(tmp_path / "a"))
    tracking = TrackingService(store)
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    with start_run(tracking, artifacts, experiment="churn", capture_environment=False) as run:
        run.log_dataset(frame, name="train")
        version = log_model(scale, "m", registry=registry, artifacts=artifacts, input_example=frame)
    assert version.run_id == run.id
    assert [d["name"] for d in version.lineage["datasets"]] == ["train"]
    # an explicit run id works outside the with block too
    assert log_model(scale, "m", registry=registry, artifacts=artifacts, run=run.id).run_id == run.id


def test_aliases_are_set_at_registration(registry: RegistryService, artifacts: FsspecArtifactStore) -> None:
    log_model(scale, "m", registry=registry, artifacts=artifacts, aliases=["champion"])
    version = log_model(scale, "m", registry=registry, artifacts=artifacts, aliases=["challenger"])
    assert version.aliases == ["challenger"]
    assert registry.get_model("m").aliases == {"champion": 1, "challenger": 2}
    assert load_model("m@champion", registry, artifacts).predict([[2.0]]).tolist() == [[1.0]]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"aliases": ["Bad Alias"]}, "aliases"),
        ({"name": "no/slashes"}, "name"),
        ({"metrics": {"auc": float("nan")}}, "metrics.auc"),
        ({"tags": {"": "x"}}, "tags"),
        ({"flavor": "tensorflow"}, "flavor"),
        ({"input_example": np.float64(1.0)}, "input_example"),
        ({"training_data": {"mixed": np.array([1, "x", 2.5], dtype=object)}}, "training_data"),
    ],
)
def test_bad_arguments_fail_before_anything_is_stored(
    registry: RegistryService, artifacts: FsspecArtifactStore, kwargs: dict[str, Any], field: str
) -> None:
    args: dict[str, Any] = {"name": "m", **kwargs}
    with pytest.raises(InvalidInputError) as err:
        log_model(scale, registry=registry, artifacts=artifacts, **args)
    assert err.value.field == field
    assert _blobs(artifacts) == []
    assert registry.search_models() == []


def test_model_failing_on_its_example_is_reported(registry: RegistryService, artifacts: FsspecArtifactStore) -> None:
    def broken(x: Any) -> Any:
        raise ValueError("shapes do not align")

    with pytest.raises(InvalidInputError, match="shapes do not align") as err:
        log_model(broken, "m", registry=registry, artifacts=artifacts, input_example=[[1.0]])
    assert err.value.field == "input_example"


def test_unknown_objects_are_refused(registry: RegistryService, artifacts: FsspecArtifactStore) -> None:
    with pytest.raises(InvalidInputError) as err:
        log_model(object(), "m", registry=registry, artifacts=artifacts)
    assert err.value.field == "model"


def test_missing_library_names_the_extra() -> None:
    with pytest.raises(MissingDependencyError) as err:
        import_library("mlpilot_no_such_library", "nosuchlib", "torch")
    assert "pip install 'mlpilot[torch]'" in err.value.message
