from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, select

from mlpilot.errors import FilterSyntaxError, InvalidInputError, NotFoundError
from mlpilot.store.schema import Run
from mlpilot.tracking import RunSpec, TrackingService
from mlpilot.tracking.filter import parse_filter
from mlpilot.tracking.filter_sql import apply_filter, compile_filter, like_to_glob

from .conftest import MakeRun


@pytest.fixture(scope="module")
def searched(module_service: TrackingService) -> tuple[TrackingService, dict[str, str]]:
    """Five runs covering numeric and text params, missing keys, NaN and case differences (read-only)."""
    service = module_service

    def make(name: str, **kwargs: Any) -> str:
        experiment = kwargs.pop("experiment", "exp")
        info = service.create_run(RunSpec(experiment=experiment, name=name, start_time=kwargs.pop("start_time")))
        service.log_batch(
            info.id,
            metrics=[(k, float(v), 0, 1_000) for k, v in kwargs.get("metrics", {}).items()],
            params={k: str(v) for k, v in kwargs.get("params", {}).items()},
            tags=kwargs.get("tags", {}),
        )
        return info.id

    made = {
        "alpha": make(
            "alpha",
            params={"max_depth": 6, "lr": 0.1, "opt": "adam"},
            metrics={"auc": 0.95, "loss": 0.2},
            tags={"team": "growth"},
            start_time=1_000,
        ),
        "beta": make(
            "beta",
            params={"max_depth": 10, "opt": "sgd"},
            metrics={"auc": 0.91, "loss": 0.3},
            tags={"team": "core"},
            start_time=2_000,
        ),
        "gamma": make(
            "gamma",
            params={"max_depth": 4, "opt": "Adam"},
            metrics={"auc": 0.85},
            tags={"team": "growth", "note": "it's 100%"},
            start_time=3_000,
        ),
        "delta": make("delta", params={"max_depth": "deep"}, metrics={"auc": math.nan}, start_time=4_000),
        "eps_1": make("eps_1", tags={"team": "Growth"}, start_time=5_000, experiment="other"),
    }
    service.end_run(made["alpha"], "FINISHED")
    service.end_run(made["beta"], "FAILED", end_time=9_000)
    return service, made


@pytest.fixture
def runs(searched: tuple[TrackingService, dict[str, str]]) -> dict[str, str]:
    return searched[1]


@pytest.fixture
def svc(searched: tuple[TrackingService, dict[str, str]]) -> TrackingService:
    """The service holding the runs above; tests using it must not write."""
    return searched[0]


def names(service: TrackingService, flt: str | None, **kwargs: Any) -> list[str]:
    return [r.info.name for r in service.search_runs(flt, **kwargs).runs]


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (None, {"alpha", "beta", "gamma", "delta", "eps_1"}),
        ("", {"alpha", "beta", "gamma", "delta", "eps_1"}),
        ("metrics.auc > 0.9", {"alpha", "beta"}),
        ("metrics.auc >= 0.91", {"alpha", "beta"}),
        ("metrics.auc < 0.9", {"gamma"}),  # NaN compares false, like NULL
        ("metrics.auc != 0.95", {"beta", "gamma"}),
        ("metrics.auc = 0.85", {"gamma"}),
        ("metrics.loss <= 0.2", {"alpha"}),
        ("metrics.loss IS NULL", {"gamma", "delta", "eps_1"}),
        ("metrics.auc IS NOT NULL", {"alpha", "beta", "gamma", "delta"}),
        # Numeric comparison on params: 10 > 8 although '10' < '8' as text; 'deep' never matches a number.
        ("params.max_depth <= 8", {"alpha", "gamma"}),
        ("params.max_depth > 8", {"beta"}),
        ("params.max_depth = 6", {"alpha"}),
        ("params.max_depth = '6'", {"alpha"}),
        ("params.max_depth = 'deep'", {"delta"}),
        ("params.max_depth in (4, 10)", {"beta", "gamma"}),
        ("params.lr = 0.1", {"alpha"}),
        ("params.opt = 'adam'", {"alpha"}),
        ("params.opt LIKE 'a%'", {"alpha"}),
        ("params.opt ILIKE 'a%'", {"alpha", "gamma"}),
        ("params.opt NOT LIKE 'a%'", {"beta", "gamma"}),
        ("params.opt != 'sgd'", {"alpha", "gamma"}),
        ("tags.team = 'growth'", {"alpha", "gamma"}),
        ("tags.team ILIKE 'growth'", {"alpha", "gamma", "eps_1"}),
        ("tags.note LIKE '%100\\%'", {"gamma"}),
        ("tags.note LIKE 'it_s%'", {"gamma"}),
        ("tags.note = 'it''s 100%'", {"gamma"}),
        ("tags.team IS NULL", {"delta"}),
        ("tags.team IN ('core', 'Growth')", {"beta", "eps_1"}),
        ("metrics.auc > 0.9 and (params.max_depth <= 8 or tags.team = 'growth')", {"alpha"}),
        ("metrics.auc > 0.8 and (params.max_depth > 8 or tags.team = 'growth')", {"alpha", "beta", "gamma"}),
        ("metrics.auc > 0.9 or tags.team = 'Growth'", {"alpha", "beta", "eps_1"}),
        ("not metrics.auc > 0.9", {"gamma", "delta", "eps_1"}),
        ("not (tags.team = 'growth' or tags.team = 'core')", {"delta", "eps_1"}),
        ("attributes.status = 'FINISHED'", {"alpha"}),
        ("attributes.status = 'failed'", {"beta"}),
        ("attributes.status IN ('RUNNING')", {"gamma", "delta", "eps_1"}),
        ("attributes.name LIKE '%a'", {"alpha", "beta", "gamma", "delta"}),
        ("attributes.name LIKE 'eps\\_%'", {"eps_1"}),
        ("attributes.run_name = 'beta'", {"beta"}),
        ("attributes.start_time >= 3000", {"gamma", "delta", "eps_1"}),
        ("attributes.end_time = 9000", {"beta"}),
        ("attributes.end_time IS NULL", {"gamma", "delta", "eps_1"}),
        ("attributes.experiment = 'other'", {"eps_1"}),
        ("attributes.parent_id IS NULL", {"alpha", "beta", "gamma", "delta", "eps_1"}),
        ("tags.team = 'x'' OR ''1''=''1'", set()),
    ],
)
def test_filter_semantics(runs: dict[str, str], svc: TrackingService, flt: str | None, expected: set[str]) -> None:
    assert set(names(svc, flt)) == expected


def test_attribute_run_id_matches_one_run(runs: dict[str, str], svc: TrackingService) -> None:
    assert names(svc, f"attributes.run_id = '{runs['gamma']}'") == ["gamma"]


@pytest.mark.parametrize(
    ("flt", "fragment"),
    [
        ("metrics.auc > 'high'", "compares to a number"),
        ("tags.team = 3", "compares to a quoted string"),
        ("attributes.start_time > 'yesterday'", "compares to a number"),
        ("attributes.name = 1", "compares to a quoted string"),
        ("attributes.colour = 'red'", "unknown attribute"),
        ("metrics.auc LIKE '9%'", "numeric"),
        ("params.depth IN (1, 'a')", "compares to a number"),
    ],
)
def test_type_errors_are_filter_errors(runs: dict[str, str], svc: TrackingService, flt: str, fragment: str) -> None:
    with pytest.raises(FilterSyntaxError, match=fragment):
        svc.search_runs(flt)


def test_values_are_bound_parameters_not_sql_text(svc: TrackingService) -> None:
    tree = parse_filter("tags.team = 'growth' and (metrics.auc > 0.123456 or params.p LIKE 'x%y')")
    for statement in (
        select(Run.id).where(compile_filter(tree, svc.store.dialect)),
        apply_filter(select(Run.id), tree, svc.store.dialect),
    ):
        sql = str(statement.compile(svc.store.engine))
        assert "growth" not in sql
        assert "0.123456" not in sql
        assert "x%y" not in sql
        assert "x*y" not in sql


def test_top_level_and_terms_become_joins_without_duplicating_runs(svc: TrackingService) -> None:
    flt = "metrics.auc > 0.5 and metrics.auc < 0.99 and tags.team != 'x' and params.opt IS NOT NULL"
    sql = str(apply_filter(select(Run.id), parse_filter(flt), svc.store.dialect).compile(svc.store.engine))
    assert sql.count("JOIN") == 3
    assert sql.count("EXISTS") == 1
    assert sorted(names(svc, flt)) == ["alpha", "beta", "gamma"]


def test_experiment_scopes_the_search(runs: dict[str, str], svc: TrackingService) -> None:
    assert names(svc, None, experiment="other") == ["eps_1"]
    assert set(names(svc, None, experiment=["exp", "other"])) == set(runs)
    with pytest.raises(NotFoundError, match="nope"):
        svc.search_runs(None, experiment="nope")


def test_default_order_is_newest_first(runs: dict[str, str], svc: TrackingService) -> None:
    assert names(svc, None) == ["eps_1", "delta", "gamma", "beta", "alpha"]


@pytest.mark.parametrize(
    ("order_by", "expected"),
    [
        (["metrics.auc DESC"], ["alpha", "beta", "gamma", "eps_1", "delta"]),
        (["metrics.auc"], ["gamma", "beta", "alpha", "eps_1", "delta"]),
        (["metrics.auc asc"], ["gamma", "beta", "alpha", "eps_1", "delta"]),
        # Numeric params sort as numbers (4 < 6 < 10); text values follow; runs without the param last.
        (["params.max_depth"], ["gamma", "alpha", "beta", "delta", "eps_1"]),
        (["params.max_depth DESC"], ["beta", "alpha", "gamma", "delta", "eps_1"]),
        (["tags.team", "attributes.start_time"], ["eps_1", "beta", "alpha", "gamma", "delta"]),
        (["attributes.start_time"], ["alpha", "beta", "gamma", "delta", "eps_1"]),
        (["attributes.status DESC", "attributes.name"], ["delta", "eps_1", "gamma", "alpha", "beta"]),
    ],
)
def test_order_by(runs: dict[str, str], svc: TrackingService, order_by: list[str], expected: list[str]) -> None:
    assert names(svc, None, order_by=order_by) == expected


@pytest.mark.parametrize("bad", ["metrics.", "colour.x DESC", "attributes.colour", "  "])
def test_bad_order_by_is_refused(runs: dict[str, str], svc: TrackingService, bad: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        svc.search_runs(None, order_by=[bad])
    assert info.value.field == "order_by"


def test_pages_cover_every_run_once_in_order(service: TrackingService, make_run: MakeRun) -> None:
    for i in range(23):
        make_run(f"r{i:02d}", metrics={"auc": i / 100}, start_time=1_000 + i)
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = service.search_runs(
            "metrics.auc >= 0.02", order_by=["metrics.auc DESC"], max_results=5, page_token=token
        )
        seen += [r.info.name for r in page.runs]
        pages += 1
        token = page.next_page_token
        if token is None:
            break
    assert pages == 5
    assert seen == [f"r{i:02d}" for i in range(22, 1, -1)]


def test_last_full_page_has_no_next_token(service: TrackingService, make_run: MakeRun) -> None:
    for i in range(4):
        make_run(f"r{i}")
    first = service.search_runs(None, max_results=2)
    second = service.search_runs(None, max_results=2, page_token=first.next_page_token)
    assert len(second.runs) == 2
    assert second.next_page_token is None


def test_page_token_is_bound_to_its_query(runs: dict[str, str], svc: TrackingService) -> None:
    token = svc.search_runs(None, max_results=2).next_page_token
    assert token is not None
    with pytest.raises(InvalidInputError, match="another filter") as info:
        svc.search_runs("metrics.auc > 0", max_results=2, page_token=token)
    assert info.value.field == "page_token"
    with pytest.raises(InvalidInputError, match="not a token"):
        svc.search_runs(None, page_token="garbage!!")


@pytest.mark.parametrize("bad", [0, -1, 50_001, True])
def test_max_results_is_bounded(svc: TrackingService, bad: int) -> None:
    with pytest.raises(InvalidInputError) as info:
        svc.search_runs(None, max_results=bad)
    assert info.value.field == "max_results"


@pytest.fixture
def statements(service: TrackingService) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(service.store.engine, "before_cursor_execute", count)
    yield seen
    event.remove(service.store.engine, "before_cursor_execute", count)


def test_search_cost_does_not_grow_with_the_page(
    service: TrackingService, make_run: MakeRun, statements: list[str]
) -> None:
    for i in range(40):
        make_run(f"r{i}", params={"a": i, "b": "x"}, metrics={"m": i, "n": 1.0}, tags={"t": "v"})
    statements.clear()
    small = service.search_runs("metrics.m >= 0 and params.b = 'x'", max_results=2)
    small_count = len([s for s in statements if s.lstrip().upper().startswith("SELECT")])
    statements.clear()
    big = service.search_runs("metrics.m >= 0 and params.b = 'x'", max_results=40)
    big_count = len([s for s in statements if s.lstrip().upper().startswith("SELECT")])
    assert len(small.runs) == 2
    assert len(big.runs) == 40
    assert big.runs[0].params == {"a": "39", "b": "x"}
    assert big.runs[0].metrics == {"m": 39.0, "n": 1.0}
    assert big_count == small_count <= 7


def test_search_omits_environment_and_get_run_has_it(service: TrackingService) -> None:
    info = service.create_run(RunSpec(experiment="e", environment={"python": "3.11", "packages": {"x": "1"}}))
    assert service.search_runs(None).runs[0].environment is None
    assert service.get_run(info.id).environment == {"python": "3.11", "packages": {"x": "1"}}


@pytest.mark.parametrize(
    ("pattern", "glob"),
    [("a%", "a*"), ("a_b", "a?b"), ("100\\%", "100%"), ("x*y?[z]", "x[*]y[?][[]z]"), ("\\_", "_")],
)
def test_like_to_glob(pattern: str, glob: str) -> None:
    assert like_to_glob(pattern) == glob
