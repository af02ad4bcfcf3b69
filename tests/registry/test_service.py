"""RegistryService over both store backends: models, versions, tags, descriptions, search and resolution."""

from __future__ import annotations

from typing import Any

import pytest

from mlpilot.errors import AlreadyExistsError, ConflictError, InvalidInputError, NotFoundError
from mlpilot.registry import RegistryService, Signature, TensorSpec
from mlpilot.store import Store
from mlpilot.tracking import RunSpec, TrackingService
from mlpilot.tracking.datasets import describe_dataset


def test_first_version_creates_the_model_and_numbers_follow(registry: RegistryService, new_version: Any) -> None:
    versions = [registry.create_model_version("churn", new_version()).version for _ in range(3)]
    assert versions == [1, 2, 3]
    model = registry.get_model("churn")
    assert model.latest_version == 3
    assert model.aliases == {}
    assert [e.kind for e in registry.model_history("churn")] == ["model.created"] + ["model.registered"] * 3


def test_version_numbers_are_per_model(registry: RegistryService, new_version: Any) -> None:
    registry.create_model_version("a", new_version())
    registry.create_model_version("a", new_version())
    assert registry.create_model_version("b", new_version()).version == 1


def test_version_metadata_round_trips(registry: RegistryService, new_version: Any) -> None:
    signature = Signature(
        kind="dataframe",
        inputs=[
            TensorSpec(name="age", dtype="int64", shape=[-1]),
            TensorSpec(name="plan", dtype="string", shape=[-1]),
        ],
        outputs=[TensorSpec(name="output", dtype="int64", shape=[-1])],
        example_type="pandas",
    )
    new = new_version(
        flavor="sklearn",
        signature=signature,
        requirements=["scikit-learn==1.9.1"],
        sample_sha256="a" * 64,
        metrics={"auc": 0.91},
        tags={"team": "growth"},
        description="gradient boosting on tenure and plan",
        lineage={"parent": "models:/churn/1"},
    )
    created = registry.create_model_version("churn", new)
    fetched = registry.get_model_version("churn", 1)
    assert fetched == created
    assert fetched.signature == signature
    assert fetched.metrics == {"auc": 0.91}
    assert fetched.tags == {"team": "growth"}
    assert fetched.lineage == {"parent": "models:/churn/1"}
    assert fetched.uri == "models:/churn/1"


def test_run_lineage_links_the_run_and_its_datasets(store: Store, registry: RegistryService, new_version: Any) -> None:
    pd = pytest.importorskip("pandas")
    tracking = TrackingService(store)
    run = tracking.create_run(RunSpec(experiment="churn"))
    frame = pd.DataFrame({"x": [1, 2, 3]})
    info = describe_dataset(frame, name="train")
    tracking.log_dataset(run.id, info, context="train")
    version = registry.create_model_version("churn", new_version(run_id=run.id))
    assert version.run_id == run.id
    [dataset] = version.lineage["datasets"]
    assert (dataset["name"], dataset["digest"], dataset["num_rows"], dataset["context"]) == (
        "train",
        info.digest,
        3,
        "train",
    )
    assert [v.version for v in registry.search_model_versions(run_id=run.id)] == [1]


def test_unknown_run_is_refused_and_nothing_is_created(registry: RegistryService, new_version: Any) -> None:
    with pytest.raises(NotFoundError) as err:
        registry.create_model_version("churn", new_version(run_id="nope"))
    assert err.value.field == "run_id"
    with pytest.raises(NotFoundError):
        registry.get_model("churn")


def test_missing_things_raise_not_found_naming_the_field(registry: RegistryService, new_version: Any) -> None:
    registry.create_model_version("churn", new_version())
    cases = [
        (lambda: registry.get_model("other"), "name"),
        (lambda: registry.get_model_version("churn", 9), "version"),
        (lambda: registry.resolve("models:/churn@champion"), "alias"),
        (lambda: registry.delete_alias("churn", "champion"), "alias"),
        (lambda: registry.set_alias("churn", "champion", 9), "version"),
        (lambda: registry.resolve("models:/ghost/latest"), "name"),
    ]
    for call, field in cases:
        with pytest.raises(NotFoundError) as err:
            call()
        assert err.value.field == field


def test_resolve_versions_aliases_and_latest(registry: RegistryService, new_version: Any) -> None:
    for _ in range(3):
        registry.create_model_version("churn", new_version())
    registry.set_alias("churn", "champion", 2)
    assert registry.resolve("models:/churn/1").version == 1
    assert registry.resolve("churn@champion").version == 2
    assert registry.resolve("models:/churn/latest").version == 3
    assert registry.resolve("churn/latest").aliases == []
    assert registry.resolve("churn/2").aliases == ["champion"]


def test_model_without_versions_has_no_latest(registry: RegistryService) -> None:
    registry.create_model("empty", description="registered ahead of training")
    assert registry.get_model("empty").latest_version is None
    with pytest.raises(NotFoundError):
        registry.resolve("empty/latest")
    with pytest.raises(AlreadyExistsError):
        registry.create_model("empty")


def test_descriptions_and_tags_edit_with_audit(registry: RegistryService, new_version: Any) -> None:
    registry.create_model_version("churn", new_version(tags={"stage": "dev"}))
    model = registry.update_model("churn", description="churn model", set_tags={"team": "growth", "x": "1"})
    assert (model.description, model.tags) == ("churn model", {"team": "growth", "x": "1"})
    model = registry.update_model("churn", delete_tags=["x"])
    assert model.tags == {"team": "growth"}
    version = registry.update_model_version("churn", 1, description="first", set_tags={"stage": "prod"})
    assert (version.description, version.tags) == ("first", {"stage": "prod"})
    unchanged = registry.update_model("churn", description="churn model")  # a no-op records nothing
    assert unchanged.description == "churn model"
    kinds = [e.kind for e in registry.model_history("churn")]
    assert kinds[-3:] == ["model.updated", "model.updated", "model.version_updated"]
    assert registry.model_history("churn")[-1].payload == {
        "version": 1,
        "description": "first",
        "set_tags": {"stage": "prod"},
    }


def test_search_models_by_name_and_tags(registry: RegistryService, new_version: Any) -> None:
    for name in ["churn-eu", "churn-us", "fraud", "under_score"]:
        registry.create_model_version(name, new_version())
    registry.update_model("churn-eu", set_tags={"team": "growth"})
    registry.update_model("fraud", set_tags={"team": "growth", "odd key.$[0]": 'it\'s "quoted"'})
    assert [m.name for m in registry.search_models()] == ["churn-eu", "churn-us", "fraud", "under_score"]
    assert [m.name for m in registry.search_models("CHURN")] == ["churn-eu", "churn-us"]
    assert [m.name for m in registry.search_models(tags={"team": "growth"})] == ["churn-eu", "fraud"]
    assert [m.name for m in registry.search_models("churn", tags={"team": "growth"})] == ["churn-eu"]
    # tag keys and values are bound parameters, whatever characters they hold
    assert [m.name for m in registry.search_models(tags={"odd key.$[0]": 'it\'s "quoted"'})] == ["fraud"]
    # LIKE wildcards in the query are literal characters
    assert [m.name for m in registry.search_models("_")] == ["under_score"]
    assert [m.name for m in registry.search_models(max_results=2, offset=1)] == ["churn-us", "fraud"]


def test_list_and_search_versions(registry: RegistryService, new_version: Any) -> None:
    for flavor in ["sklearn", "xgboost", "sklearn"]:
        registry.create_model_version("churn", new_version(flavor=flavor))
    registry.create_model_version("fraud", new_version(flavor="sklearn", tags={"stage": "prod"}))
    assert [v.version for v in registry.list_model_versions("churn")] == [3, 2, 1]
    assert [v.version for v in registry.list_model_versions("churn", max_results=1, offset=1)] == [2]
    found = registry.search_model_versions(flavor="sklearn")
    assert sorted((v.name, v.version) for v in found) == [("churn", 1), ("churn", 3), ("fraud", 1)]
    assert [(v.name, v.version) for v in registry.search_model_versions(tags={"stage": "prod"})] == [("fraud", 1)]
    assert [v.version for v in registry.search_model_versions(name="churn", flavor="xgboost")] == [2]


def test_delete_version_refused_while_aliased(registry: RegistryService, new_version: Any) -> None:
    registry.create_model_version("churn", new_version())
    registry.create_model_version("churn", new_version())
    registry.set_alias("churn", "champion", 1)
    with pytest.raises(ConflictError):
        registry.delete_model_version("churn", 1)
    registry.delete_model_version("churn", 2)
    assert [v.version for v in registry.list_model_versions("churn")] == [1]
    # models:/churn/2 must never point at another model: the deleted number is not given out again
    assert registry.create_model_version("churn", new_version()).version == 3
    assert registry.get_model("churn").latest_version == 3
    assert registry.model_history("churn")[-2].kind == "model.version_deleted"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_results": 0}, "max_results"),
        ({"max_results": 1001}, "max_results"),
        ({"offset": -1}, "offset"),
    ],
)
def test_bad_pagination_is_refused(registry: RegistryService, kwargs: dict[str, int], field: str) -> None:
    with pytest.raises(InvalidInputError) as err:
        registry.search_models(**kwargs)
    assert err.value.field == field


def test_bad_names_and_versions_are_refused(registry: RegistryService, new_version: Any) -> None:
    with pytest.raises(InvalidInputError) as err:
        registry.create_model_version("a/b", new_version())
    assert err.value.field == "name"
    registry.create_model_version("churn", new_version())
    with pytest.raises(InvalidInputError) as err:
        registry.get_model_version("churn", 0)
    assert err.value.field == "version"
    with pytest.raises(InvalidInputError) as err:
        registry.update_model("churn", set_tags={"": "x"})
    assert err.value.field == "tags"
