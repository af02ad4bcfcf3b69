"""Compile filter ASTs and ``order_by`` clauses to SQLAlchemy expressions over the ``runs`` table.

Every literal becomes a bound parameter; no user text is pasted into SQL. Each metric/param/tag predicate is
one correlated ``EXISTS`` on a primary-key or ``(key, value)`` index, so a search is one query whatever the
filter.

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

from sqlalchemy import ColumnElement, and_, exists, false, not_, nulls_last, or_, select, true
from sqlalchemy.sql.elements import UnaryExpression

from mlpilot.errors import FilterSyntaxError, InvalidInputError
from mlpilot.store.schema import Experiment, LatestMetric, Param, Run, Tag
from mlpilot.tracking.filter import And, Comparison, Expr, Field, Not, Or, Scalar, parse_field
from mlpilot.tracking.models import RunStatus

__all__ = ["ATTRIBUTES", "compile_filter", "compile_order_by", "like_to_glob"]

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


def _keyed(cmp: Comparison, dialect: str) -> ColumnElement[bool]:
    """A metric, param or tag predicate: one correlated EXISTS (NOT EXISTS for IS NULL)."""
    entity, key = cmp.field.entity, cmp.field.key
    table: Any = {"metrics": LatestMetric, "params": Param, "tags": Tag}[entity]
    base = [table.run_id == Run.id, table.key == key]
    if cmp.op in ("IS NULL", "IS NOT NULL"):
        present = exists(select(1).where(*base))
        return not_(present) if cmp.op == "IS NULL" else present
    if entity == "metrics":
        cond = _compare(LatestMetric.value, cmp, dialect, numeric=True)
    elif entity == "tags":
        cond = _compare(Tag.value, cmp, dialect, numeric=False)
    else:
        literals = cmp.value if isinstance(cmp.value, tuple) else (cmp.value,)
        numeric = isinstance(literals[0], int | float)
        cond = _compare(Param.value_num if numeric else Param.value, cmp, dialect, numeric=numeric)
    return exists(select(1).where(*base, cond))


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
    """The WHERE clause (over ``runs``) for a parsed filter on ``dialect`` (``sqlite`` or ``postgresql``)."""
    return _compile(expr, dialect)


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
