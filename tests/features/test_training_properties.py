"""The training-set join equals a brute-force point-in-time join on random data.

The data is drawn from tiny ranges on purpose: ties between event times, corrections (same event time,
later availability), exact duplicates, rows available before or long after their event time, rows never
available, TTL edges, duplicate and null entity rows all occur often.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlpilot.features import Entity, Feature, FeatureView, ParquetSource, TableSource, get_training_set
from mlpilot.features.training import Engine

from .conftest import hours

HOUR_US = 3_600_000_000
NEVER = float("inf")


@dataclass(frozen=True)
class Row:
    cid: int
    et: int  # hours
    av: int | None  # hours; None = never available
    x: float
    seq: int


def _rows(draw: Any, bitemporal: bool) -> list[Row]:
    n = draw(st.integers(0, 14))
    rows = []
    for i in range(n):
        et = draw(st.integers(0, 12))
        av = et + draw(st.integers(-2, 5)) if bitemporal else et
        if bitemporal and draw(st.integers(0, 9)) == 0:
            av = None
        rows.append(Row(draw(st.integers(0, 3)), et, av, float(i), i))
    return rows


@st.composite
def scenarios(draw: Any) -> dict[str, Any]:
    return {
        "bi_rows": _rows(draw, True),
        "plain_rows": _rows(draw, False),
        "entities": draw(
            st.lists(
                st.tuples(st.one_of(st.none(), st.integers(0, 4)), st.integers(0, 16)),
                min_size=1,
                max_size=12,
            )
        ),
        "bi_ttl": draw(st.one_of(st.none(), st.integers(1, 6))),
        "plain_ttl": draw(st.one_of(st.none(), st.integers(1, 6))),
        "strict": draw(st.booleans()),
        "embargo": draw(st.integers(0, 2)),
    }


def reference(
    rows: list[Row], cid: int | None, t: int, *, ttl: int | None, strict: bool, embargo: int, bitemporal: bool
) -> tuple[float | None, dict[str, bool]]:
    """The definition, written as plainly as possible: value and report flags for one entity row."""
    at = t - embargo

    def ok(value: float) -> bool:
        return value < at if strict else value <= at

    same_key = [r for r in rows if cid is not None and r.cid == cid]
    known = [r for r in same_key if ok(r.et) and (not bitemporal or (r.av is not None and ok(r.av)))]
    best = max(known, key=lambda r: (r.et, r.av, r.seq)) if known else None
    flags = {"m": best is not None, "q": False, "a": False, "x": False}
    if best is not None:
        flags["q"] = best.et == at or (bitemporal and best.av == at)
        flags["x"] = ttl is not None and best.et < at - ttl
    if bitemporal:
        best_rank = (best.et, best.av) if best is not None else (-NEVER, -NEVER)
        flags["a"] = any(
            ok(r.et) and not (r.av is not None and ok(r.av)) and (r.et, NEVER if r.av is None else r.av) > best_rank
            for r in same_key
        )
    value = None if best is None or flags["x"] else best.x
    return value, flags


def _view(name: str, rows: list[Row], *, ttl: int | None, bitemporal: bool, folder: Path | None) -> FeatureView:
    """The rows as an in-memory table, or (with ``folder``) as two Parquet files of tiny row groups, so that
    source order spans files and row groups."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, Any] = {
        "cid": pa.array([r.cid for r in rows], pa.int64()),
        "et": pa.array([hours(r.et) for r in rows], pa.timestamp("us")),
        name: pa.array([r.x for r in rows], pa.float64()),
    }
    if bitemporal:
        columns["av"] = pa.array([None if r.av is None else hours(r.av) for r in rows], pa.timestamp("us"))
    data = pa.table(columns)
    source: TableSource | ParquetSource = TableSource(data)
    if folder is not None:
        half = len(rows) // 2
        (folder / name).mkdir()
        pq.write_table(data.slice(0, half), folder / name / "a.parquet", row_group_size=3)
        pq.write_table(data.slice(half), folder / name / "b.parquet", row_group_size=2)
        source = ParquetSource(str(folder / name / "*.parquet"))
    return FeatureView(
        name,
        [Entity("customer", ["cid"])],
        source,
        "et",
        available_at_field="av" if bitemporal else None,
        ttl=None if ttl is None else timedelta(hours=ttl),
        features=[Feature(name, "float64")],
    )


@pytest.mark.parametrize(
    ("engine", "layout"), [("memory", "table"), ("memory", "parquet"), ("duckdb", "table"), ("duckdb", "parquet")]
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(s=scenarios())
def test_join_equals_brute_force_reference(engine: Engine, layout: str, s: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) if layout == "parquet" else None
        if folder is not None and (not s["bi_rows"] or not s["plain_rows"]):
            return  # a glob matching no file is refused up front; empty views are covered by the table layout
        bi = _view("bi", s["bi_rows"], ttl=s["bi_ttl"], bitemporal=True, folder=folder)
        plain = _view("plain", s["plain_rows"], ttl=s["plain_ttl"], bitemporal=False, folder=folder)
        _check(s, bi, plain, engine)


def _check(s: dict[str, Any], bi: FeatureView, plain: FeatureView, engine: Engine) -> None:
    import pyarrow as pa

    entity_df = pa.table(
        {
            "cid": pa.array([c for c, _ in s["entities"]], pa.int64()),
            "event_timestamp": pa.array([hours(t) for _, t in s["entities"]], pa.timestamp("us")),
            "label": list(range(len(s["entities"]))),
        }
    )
    result = get_training_set(
        entity_df, [bi, plain], strict=s["strict"], embargo=timedelta(hours=s["embargo"]), threads=1, engine=engine
    )
    got = result.data.to_pydict()
    assert got["label"] == list(range(len(s["entities"]))), "entity rows keep their order"
    totals = {name: {"m": 0, "q": 0, "a": 0, "x": 0} for name in ("bi", "plain")}
    for i, (cid, t) in enumerate(s["entities"]):
        for name, rows, ttl, bitemporal in (
            ("bi", s["bi_rows"], s["bi_ttl"], True),
            ("plain", s["plain_rows"], s["plain_ttl"], False),
        ):
            value, flags = reference(
                rows, cid, t, ttl=ttl, strict=s["strict"], embargo=s["embargo"], bitemporal=bitemporal
            )
            assert got[name][i] == value, f"view {name}, entity row {i} ({cid}, t={t})"
            for flag, on in flags.items():
                totals[name][flag] += on
    for name, counts in totals.items():
        view_report = result.report.views[name]
        assert view_report.matched == counts["m"]
        assert view_report.no_match == len(s["entities"]) - counts["m"]
        assert view_report.equal_timestamp == counts["q"]
        assert view_report.excluded_by_availability == counts["a"]
        assert view_report.ttl_expired == counts["x"]


@pytest.mark.parametrize("strict", [False, True])
def test_reference_agrees_on_a_worked_example(strict: bool) -> None:
    """Guards the reference itself on a case computed by hand (the docs' bitemporal example)."""
    rows = [Row(1, 0, 0, 1.0, 0), Row(1, 5, 9, 2.0, 1), Row(1, 5, 12, 3.0, 2)]
    expected = {4: 1.0, 6: 1.0, 9: 1.0 if strict else 2.0, 13: 3.0}
    for t, value in expected.items():
        got, _ = reference(rows, 1, t, ttl=None, strict=strict, embargo=0, bitemporal=True)
        assert got == value
