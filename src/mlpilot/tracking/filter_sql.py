"""Compile filter ASTs and ``order_by`` clauses to SQLAlchemy expressions over the ``runs`` table.

Every literal becomes a bound parameter; no user text is pasted into SQL. A search is one query whatever the
filter: each metric/param/tag predicate is a JOIN (top-level AND terms) or a correlated ``EXISTS`` (under OR or
NOT) on a primary-key or ``(key, value)`` index.

Semantics, alike on SQLite and PostgreSQL:

- ``metrics.k`` compares the run's latest value of ``k`` (highest step, then time) and needs a number.
- ``params.k`` compares numerically with a number (the param's numeric view; non-numeric params never match)
  and as text with a string.
- ``tags.k`` and text attributes need strings; ``attributes.start_time``/``end_time`` need numbers (ms).
- ``LIKE`` is case-sensitive with ``%`` and ``_`` wildcards (backslash escapes them); ``ILIKE`` ignores case.
- ``x IS NULL`` on a metric, param or tag means the run did not log that key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    exists,
    false,
    func,
    literal_column,
    not_,
    nulls_last,
    or_,
    select,
    true,
)
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import UnaryExpression

from mlpilot.errors import FilterSyntaxError, InvalidInputError
from mlpilot.store.schema import TAG_INDEX_PREFIX, Experiment, LatestMetric, Param, Run, Tag
from mlpilot.tracking.filter import And, Comparison, Expr, Field, Not, Or, Scalar, parse_field
from mlpilot.tracking.models import RunStatus

__all__ = ["ATTRIBUTES", "apply_filter", "compile_filter", "compile_order_by", "like_to_glob"]

_TEXT_ATTRIBUTES: dict[str, Any] = {
    "run_id": Run.id,
    "id": Run.id,
    "name": Run.name,
    "run_name": Run.name,
    "status": Run.status,
    "user": Run.user,
    "user_id": Run.user,
    "source": Run.source,
    "git_commit": Run.git_commit,
    "parent_id": Run.parent_id,
    "parent_run_id": Run.parent_id,
}
_NUMERIC_ATTRIBUTES: dict[str, Any] = {
    "start_time": Run.start_time,
    "end_time": Run.end_time,
    "experiment_id": Run.experiment_id,
}
_KEYED_TABLES: dict[str, Any] = {"metrics": LatestMetric, "params": Param, "tags": Tag}
#: Attribute names a filter or an ``order_by`` may use.
ATTRIBUTES = sorted({*_TEXT_ATTRIBUTES, *_NUMERIC_ATTRIBUTES, "experiment", "experiment_name"})


def like_to_glob(pattern: str) -> str:
    """Translate a LIKE pattern (``%``, ``_``, backslash escapes) to a case-sensitive SQLite GLOB pattern.

    >>> like_to_glob("run_%[1]")
    'run?*[[]1]'
    """
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            i += 1
            ch = pattern[i]
            out.append(f"[{ch}]" if ch in "*?[" else ch)
        elif ch == "%":
            out.append("*")
        elif ch == "_":
            out.append("?")
        elif ch in "*?[":
            out.append(f"[{ch}]")
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _describe(field: Field) -> str:
    return f"{field.entity}.{field.key}"


def _compare(col: Any, cmp: Comparison, dialect: str, *, numeric: bool) -> ColumnElement[bool]:
    """``col <op> literal`` after checking the literal's type against the column's."""
    op, value = cmp.op, cmp.value
    if numeric and op in ("LIKE", "NOT LIKE", "ILIKE", "NOT ILIKE"):
        raise FilterSyntaxError(f"{op} does not apply to {_describe(cmp.field)}: it is numeric", field="filter")
    want = "a number" if numeric else "a quoted string"
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        is_num = isinstance(v, int | float)
        if v is not None and is_num != numeric:
            raise FilterSyntaxError(
                f"{_describe(cmp.field)} compares to {want}, got {v!r}", field="filter", value=repr(v)
            )
    if op in ("IN", "NOT IN"):
        clause: ColumnElement[bool] = col.in_(list(values))
        return not_(clause) if op == "NOT IN" else clause
    if op in ("LIKE", "NOT LIKE", "ILIKE", "NOT ILIKE"):
        assert isinstance(value, str)
        if op.endswith("ILIKE"):
            clause = col.ilike(value, escape="\\")
        elif dialect == "sqlite":
            clause = col.op("GLOB", is_comparison=True)(like_to_glob(value))  # SQLite's LIKE ignores ASCII case
        else:
            clause = col.like(value, escape="\\")
        return not_(clause) if op.startswith("NOT") else clause
    ops: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
        "=": lambda c, v: c == v,
        "!=": lambda c, v: c != v,
        "<": lambda c, v: c < v,
        "<=": lambda c, v: c <= v,
        ">": lambda c, v: c > v,
        ">=": lambda c, v: c >= v,
    }
    return ops[op](col, value)


def _status_literal(value: Scalar | tuple[Scalar, ...] | None) -> Scalar | tuple[Scalar, ...] | None:
    def norm(v: Scalar) -> Scalar:
        if isinstance(v, str) and v.upper() in RunStatus.__members__:
            return v.upper()
        return v

    if isinstance(value, tuple):
        return tuple(norm(v) for v in value)
    return norm(value) if value is not None else None


def _attribute(cmp: Comparison, dialect: str) -> ColumnElement[bool]:
    key = cmp.field.key.lower()
    if cmp.op in ("IS NULL", "IS NOT NULL"):
        col = _TEXT_ATTRIBUTES.get(key, _NUMERIC_ATTRIBUTES.get(key))
        if col is None:
            raise _unknown_attribute(cmp.field)
        present: ColumnElement[bool] = col.is_(None) if cmp.op == "IS NULL" else col.is_not(None)
        return present
    if key in ("experiment", "experiment_name"):
        inner = _compare(Experiment.name, cmp, dialect, numeric=False)
        return Run.experiment_id.in_(select(Experiment.id).where(inner))
    if key in _NUMERIC_ATTRIBUTES:
        return _compare(_NUMERIC_ATTRIBUTES[key], cmp, dialect, numeric=True)
    if key in _TEXT_ATTRIBUTES:
        if key == "status":
            cmp = Comparison(cmp.field, cmp.op, _status_literal(cmp.value))
        return _compare(_TEXT_ATTRIBUTES[key], cmp, dialect, numeric=False)
    raise _unknown_attribute(cmp.field)


def _unknown_attribute(field: Field) -> FilterSyntaxError:
    return FilterSyntaxError(
        f"unknown attribute {field.key!r}; expected one of {', '.join(ATTRIBUTES)}", field="filter"
    )


def _keyed_condition(cmp: Comparison, dialect: str, table: Any) -> ColumnElement[bool]:
    """The value test of a metric, param or tag comparison on ``table`` (the table itself or an alias)."""
    if cmp.field.entity == "metrics":
        return _compare(table.value, cmp, dialect, numeric=True)
    if cmp.field.entity == "tags":
        if cmp.op not in ("=", "IN"):
            return _compare(table.value, cmp, dialect, numeric=False)
        # Equality goes through the (key, value prefix) index, then checks the whole value. ``value || ''`` keeps
        # SQLite from propagating the constant into the prefix test, which would stop it matching the index.
        exact = _compare(table.value.concat(""), cmp, dialect, numeric=False)
        prefix = func.substr(table.value, literal_column("1"), literal_column(str(TAG_INDEX_PREFIX)))
        values = cmp.value if isinstance(cmp.value, tuple) else (cmp.value,)
        heads = [str(v)[:TAG_INDEX_PREFIX] for v in values]
        return and_(prefix == heads[0] if cmp.op == "=" else prefix.in_(heads), exact)
    literals = cmp.value if isinstance(cmp.value, tuple) else (cmp.value,)
    numeric = isinstance(literals[0], int | float)
    return _compare(table.value_num if numeric else table.value, cmp, dialect, numeric=numeric)


def _keyed(cmp: Comparison, dialect: str) -> ColumnElement[bool]:
    """A metric, param or tag predicate: one correlated EXISTS (NOT EXISTS for IS NULL)."""
    table: Any = _KEYED_TABLES[cmp.field.entity]
    base = [table.run_id == Run.id, table.key == cmp.field.key]
    if cmp.op in ("IS NULL", "IS NOT NULL"):
        present = exists(select(1).where(*base))
        return not_(present) if cmp.op == "IS NULL" else present
    return exists(select(1).where(*base, _keyed_condition(cmp, dialect, table)))


def _compile(expr: Expr, dialect: str) -> ColumnElement[bool]:
    if isinstance(expr, And):
        return and_(true(), *(_compile(e, dialect) for e in expr.items))
    if isinstance(expr, Or):
        return or_(false(), *(_compile(e, dialect) for e in expr.items))
    if isinstance(expr, Not):
        return not_(_compile(expr.item, dialect))
    if expr.field.entity == "attributes":
        return _attribute(expr, dialect)
    return _keyed(expr, dialect)


def compile_filter(expr: Expr, dialect: str) -> ColumnElement[bool]:
    """The filter as one WHERE clause over ``runs`` (EXISTS per metric, param or tag predicate)."""
    return _compile(expr, dialect)


def apply_filter(query: Select[Any], expr: Expr, dialect: str) -> Select[Any]:
    """Restrict ``query`` (a SELECT from ``runs``) to the runs matching ``expr``.

    Metric, param and tag comparisons ANDed at the top level become inner JOINs, so the database can start from
    whichever ``(key, value)`` index is most selective; each table's primary key is ``(run_id, key)``, so a join
    on one key matches at most one row per run and never duplicates runs. Everything under OR or NOT, IS NULL
    tests and attributes stay in the WHERE clause.
    """
    conjuncts = expr.items if isinstance(expr, And) else (expr,)
    rest: list[ColumnElement[bool]] = []
    for item in conjuncts:
        if (
            isinstance(item, Comparison)
            and item.field.entity != "attributes"
            and item.op not in ("IS NULL", "IS NOT NULL")
        ):
            table: Any = aliased(_KEYED_TABLES[item.field.entity])
            on = and_(table.run_id == Run.id, table.key == item.field.key, _keyed_condition(item, dialect, table))
            query = query.join(table, on)
        else:
            rest.append(_compile(item, dialect))
    return query.where(*rest) if rest else query


def _order_columns(field: Field) -> list[Any]:
    if field.entity == "metrics":
        return [
            select(LatestMetric.value)
            .where(LatestMetric.run_id == Run.id, LatestMetric.key == field.key)
            .scalar_subquery()
        ]
    if field.entity == "params":
        where = (Param.run_id == Run.id, Param.key == field.key)
        # Numbers sort numerically; runs whose param is not a number follow, by text.
        return [
            select(Param.value_num).where(*where).scalar_subquery(),
            select(Param.value).where(*where).scalar_subquery(),
        ]
    if field.entity == "tags":
        return [select(Tag.value).where(Tag.run_id == Run.id, Tag.key == field.key).scalar_subquery()]
    key = field.key.lower()
    if key in ("experiment", "experiment_name"):
        return [select(Experiment.name).where(Experiment.id == Run.experiment_id).scalar_subquery()]
    col = _TEXT_ATTRIBUTES.get(key, _NUMERIC_ATTRIBUTES.get(key))
    if col is None:
        raise InvalidInputError(
            f"order_by: unknown attribute {field.key!r}; expected one of {', '.join(ATTRIBUTES)}",
            field="order_by",
        )
    return [col]


def compile_order_by(order_by: list[str] | None) -> list[UnaryExpression[Any]]:
    """ORDER BY terms for clauses like ``"metrics.auc DESC"``; runs lacking the key sort last either way.

    Ties (and the absence of ``order_by``) fall back to newest first, then run id, so pages never overlap.
    """
    terms: list[UnaryExpression[Any]] = []
    for clause in order_by or []:
        if not isinstance(clause, str) or not clause.strip():
            raise InvalidInputError(f"order_by: expected 'field [ASC|DESC]', got {clause!r}", field="order_by")
        text = clause.strip()
        descending = False
        head, _, last = text.rpartition(" ")
        if head and last.upper() in ("ASC", "DESC"):
            descending = last.upper() == "DESC"
            text = head.strip()
        try:
            field = parse_field(text)
        except FilterSyntaxError as exc:
            raise InvalidInputError(f"order_by: {exc.message}", field="order_by") from exc
        for col in _order_columns(field):
            terms.append(nulls_last(col.desc() if descending else col.asc()))
    terms.append(nulls_last(Run.start_time.desc()))
    terms.append(Run.id.asc())
    return terms
