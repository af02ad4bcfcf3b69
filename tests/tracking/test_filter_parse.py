from __future__ import annotations

import pytest

from mlpilot.errors import FilterSyntaxError
from mlpilot.tracking.filter import And, Comparison, Field, Not, Or, parse_field, parse_filter, tokenize


def cmp(entity: str, key: str, op: str, value: object) -> Comparison:
    return Comparison(Field(entity, key), op, value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("metrics.auc > 0.9", cmp("metrics", "auc", ">", 0.9)),
        ("metric.auc>=1", cmp("metrics", "auc", ">=", 1)),
        ("params.max_depth <= 8", cmp("params", "max_depth", "<=", 8)),
        ("param.lr = 1e-3", cmp("params", "lr", "=", 0.001)),
        ("metrics.loss > -1.5", cmp("metrics", "loss", ">", -1.5)),
        ("metrics.loss>-2", cmp("metrics", "loss", ">", -2)),
        ("tags.team = 'growth'", cmp("tags", "team", "=", "growth")),
        ('tags.team = "growth"', cmp("tags", "team", "=", "growth")),
        ("tags.team == 'a'", cmp("tags", "team", "=", "a")),
        ("tags.team <> 'a'", cmp("tags", "team", "!=", "a")),
        ("tags.note = 'it''s'", cmp("tags", "note", "=", "it's")),
        ("tags.note = 'it\\'s'", cmp("tags", "note", "=", "it's")),
        ("attributes.status = 'FINISHED'", cmp("attributes", "status", "=", "FINISHED")),
        ("attr.start_time > 5", cmp("attributes", "start_time", ">", 5)),
        ("run.name LIKE 'base%'", cmp("attributes", "name", "LIKE", "base%")),
        ("tags.team ILIKE 'GR%'", cmp("tags", "team", "ILIKE", "GR%")),
        ("tags.team not like 'x%'", cmp("tags", "team", "NOT LIKE", "x%")),
        ("metrics.val.auc > 0.5", cmp("metrics", "val.auc", ">", 0.5)),
        ("metrics.train/loss < 0.1", cmp("metrics", "train/loss", "<", 0.1)),
        ("metrics.`my metric (%)` > 3", cmp("metrics", "my metric (%)", ">", 3)),
        ("params.\"odd key\" = 'x'", cmp("params", "odd key", "=", "x")),
        ("tags.`a``b` = 'x'", cmp("tags", "a`b", "=", "x")),
        (
            "attributes.status IN ('FINISHED', 'FAILED')",
            cmp("attributes", "status", "IN", ("FINISHED", "FAILED")),
        ),
        ("params.depth not in (1, 2)", cmp("params", "depth", "NOT IN", (1, 2))),
        ("attributes.parent_id IS NULL", cmp("attributes", "parent_id", "IS NULL", None)),
        ("metrics.auc is not null", cmp("metrics", "auc", "IS NOT NULL", None)),
        ("tags.and = 'or'", cmp("tags", "and", "=", "or")),
    ],
)
def test_comparisons_parse(source: str, expected: Comparison) -> None:
    assert parse_filter(source) == expected


def test_and_binds_tighter_than_or() -> None:
    a = cmp("metrics", "a", ">", 1)
    b = cmp("metrics", "b", ">", 2)
    c = cmp("metrics", "c", ">", 3)
    assert parse_filter("metrics.a > 1 or metrics.b > 2 and metrics.c > 3") == Or((a, And((b, c))))
    assert parse_filter("(metrics.a > 1 or metrics.b > 2) and metrics.c > 3") == And((Or((a, b)), c))
    assert parse_filter("metrics.a > 1 AND metrics.b > 2 AND metrics.c > 3") == And((a, b, c))


def test_issue_example_parses_to_the_expected_tree() -> None:
    tree = parse_filter("metrics.auc > 0.9 and (params.max_depth <= 8 or tags.team = 'growth')")
    assert tree == And(
        (
            cmp("metrics", "auc", ">", 0.9),
            Or((cmp("params", "max_depth", "<=", 8), cmp("tags", "team", "=", "growth"))),
        )
    )


def test_not_negates_the_next_term() -> None:
    assert parse_filter("not metrics.a > 1 and metrics.b > 2") == And(
        (Not(cmp("metrics", "a", ">", 1)), cmp("metrics", "b", ">", 2))
    )


@pytest.mark.parametrize(
    ("source", "position", "fragment"),
    [
        ("", 1, "empty"),
        ("metrics.auc >", 14, "number or a quoted string"),
        ("metrics.auc 0.9", 13, "comparison operator"),
        ("metric auc > 1", 8, "'.'"),
        ("foo.auc > 1", 1, "expected a field"),
        ("metrics.auc > 0.9 and", 22, "expected a field"),
        ("metrics.auc > 0.9 metrics.b > 1", 19, "'and', 'or'"),
        ("(metrics.auc > 0.9", 19, "')'"),
        ("tags.x = 'open", 10, "unterminated"),
        ("metrics.auc > 0.9 ; drop table runs", 19, "unexpected character"),
        ("tags.x LIKE 5", 13, "quoted pattern"),
        ("tags.x IS 5", 11, "NULL after IS"),
        ("tags.x NOT = 'a'", 12, "LIKE, ILIKE or IN"),
        ("tags.x IN ('a'", 15, "closing the IN list"),
        ("metrics. > 1", 10, "expected a key"),
        ("metrics.`` > 1", 9, "empty key"),
    ],
)
def test_syntax_errors_name_the_position(source: str, position: int, fragment: str) -> None:
    with pytest.raises(FilterSyntaxError) as info:
        parse_filter(source)
    assert f"position {position}" in info.value.message
    assert fragment in info.value.message
    assert info.value.field == "filter"
    assert info.value.details["position"] == position


def test_tokens_keep_their_offsets() -> None:
    tokens = tokenize("metrics.auc >= 0.5")
    assert [(t.kind, t.pos) for t in tokens] == [
        ("name", 0),
        ("dot", 7),
        ("name", 8),
        ("op", 12),
        ("number", 15),
        ("eof", 18),
    ]


def test_parse_field_reads_a_lone_field() -> None:
    assert parse_field("metrics.`a b`") == Field("metrics", "a b")
    with pytest.raises(FilterSyntaxError):
        parse_field("metrics.a DESC")
