"""The run-search filter language: a tokenizer and a recursive-descent parser producing a small AST.

Grammar (keywords are case-insensitive)::

    filter     := or_expr EOF
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | primary
    primary    := "(" or_expr ")" | comparison
    comparison := field op literal
                | field ["not"] ("like" | "ilike") string
                | field ["not"] "in" "(" literal ("," literal)* ")"
                | field "is" ["not"] "null"
    field      := entity "." key
    entity     := metrics | params | tags | attributes   (singular forms and "attr"/"run" accepted)
    key        := name ("." name | "/" name)* | `backticked` | 'quoted' | "quoted"
    op         := "=" | "==" | "!=" | "<>" | "<" | "<=" | ">" | ">="
    literal    := number | 'string' | "string"     (quotes are escaped by doubling them or with a backslash)

For example ``metrics.auc > 0.9 and (params.max_depth <= 8 or tags.team = 'growth')``. Syntax errors raise
:class:`~mlpilot.errors.FilterSyntaxError` naming the 1-based position. The SQL compiler lives in
``filter_sql``; parsing alone never touches a database::

    >>> parse_filter("metrics.auc > 0.9")
    Comparison(field=Field(entity='metrics', key='auc'), op='>', value=0.9)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from mlpilot.errors import FilterSyntaxError

__all__ = [
    "ENTITY_ALIASES",
    "And",
    "Comparison",
    "Expr",
    "Field",
    "Not",
    "Or",
    "parse_field",
    "parse_filter",
    "tokenize",
]

Entity = Literal["metrics", "params", "tags", "attributes"]
Scalar = float | int | str

ENTITY_ALIASES: dict[str, Entity] = {
    "metrics": "metrics",
    "metric": "metrics",
    "params": "params",
    "param": "params",
    "parameters": "params",
    "tags": "tags",
    "tag": "tags",
    "attributes": "attributes",
    "attribute": "attributes",
    "attr": "attributes",
    "run": "attributes",
}

COMPARISONS = ("=", "!=", "<", "<=", ">", ">=")


@dataclass(frozen=True)
class Field:
    entity: Entity
    key: str


@dataclass(frozen=True)
class Comparison:
    """``field op value``; op is one of COMPARISONS, LIKE, ILIKE, NOT LIKE, NOT ILIKE, IN, NOT IN, IS NULL,
    IS NOT NULL (value is a tuple for IN and None for the IS forms)."""

    field: Field
    op: str
    value: Scalar | tuple[Scalar, ...] | None


@dataclass(frozen=True)
class And:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Not:
    item: Expr


Expr = Comparison | And | Or | Not


@dataclass(frozen=True)
class Token:
    kind: Literal["name", "number", "string", "quoted_name", "op", "lparen", "rparen", "comma", "dot", "eof"]
    text: str
    pos: int  # 0-based offset into the source
    value: Scalar | None = None


_NUMBER = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPS = ("<=", ">=", "!=", "<>", "==", "=", "<", ">")
_KEYWORDS = {"and", "or", "not", "like", "ilike", "in", "is", "null"}


def _fail(source: str, pos: int, message: str) -> FilterSyntaxError:
    snippet = source[pos : pos + 20] or "end of filter"
    return FilterSyntaxError(
        f"invalid filter at position {pos + 1}: {message} (near {snippet!r})",
        field="filter",
        position=pos + 1,
    )


def _read_quoted(source: str, start: int) -> tuple[str, int]:
    """Read a quoted string starting at ``start`` (the opening quote); return its text and the end offset."""
    quote = source[start]
    out: list[str] = []
    i = start + 1
    while i < len(source):
        ch = source[i]
        if ch == "\\" and i + 1 < len(source):
            out.append(source[i + 1])
            i += 2
            continue
        if ch == quote:
            if i + 1 < len(source) and source[i + 1] == quote:  # doubled quote: a literal quote
                out.append(quote)
                i += 2
                continue
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise _fail(source, start, f"unterminated {quote} quote")


def tokenize(source: str) -> list[Token]:
    """Split ``source`` into tokens, ending with an ``eof`` token."""
    tokens: list[Token] = []
    i = 0
    n = len(source)
    while i < n:
        ch = source[i]
        if ch.isspace():
            i += 1
            continue
        if ch == "(":
            tokens.append(Token("lparen", ch, i))
            i += 1
        elif ch == ")":
            tokens.append(Token("rparen", ch, i))
            i += 1
        elif ch == ",":
            tokens.append(Token("comma", ch, i))
            i += 1
        elif ch in "'\"`":
            text, end = _read_quoted(source, i)
            kind: Literal["string", "quoted_name"] = "quoted_name" if ch == "`" else "string"
            tokens.append(Token(kind, source[i:end], i, text))
            i = end
        elif (number := _NUMBER.match(source, i)) and not (
            ch == "." and tokens and tokens[-1].kind in ("name", "quoted_name", "string")
        ):
            text = number.group()
            value: float | int = float(text) if any(c in text for c in ".eE") else int(text)
            tokens.append(Token("number", text, i, value))
            i = number.end()
        elif ch == ".":
            tokens.append(Token("dot", ch, i))
            i += 1
        elif ch == "/":
            tokens.append(Token("op", ch, i))
            i += 1
        elif name := _NAME.match(source, i):
            tokens.append(Token("name", name.group(), i, name.group()))
            i = name.end()
        else:
            op = next((o for o in _OPS if source.startswith(o, i)), None)
            if op is None:
                raise _fail(source, i, f"unexpected character {ch!r}")
            tokens.append(Token("op", op, i))
            i += len(op)
    tokens.append(Token("eof", "", n))
    return tokens


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = tokenize(source)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def keyword(self, word: str) -> bool:
        """Consume the keyword ``word`` if it is next."""
        if self.tok.kind == "name" and self.tok.text.lower() == word:
            self.i += 1
            return True
        return False

    def expect(self, kind: str, what: str) -> Token:
        if self.tok.kind != kind:
            raise _fail(self.source, self.tok.pos, f"expected {what}")
        return self.advance()

    def parse(self) -> Expr:
        if self.tok.kind == "eof":
            raise _fail(self.source, 0, "the filter is empty")
        expr = self.or_expr()
        if self.tok.kind != "eof":  # type: ignore[comparison-overlap]  # mypy narrowed the kind before or_expr()
            raise _fail(self.source, self.tok.pos, "expected 'and', 'or' or the end of the filter")
        return expr

    def or_expr(self) -> Expr:
        items = [self.and_expr()]
        while self.keyword("or"):
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self) -> Expr:
        items = [self.not_expr()]
        while self.keyword("and"):
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else And(tuple(items))

    def not_expr(self) -> Expr:
        if self.keyword("not"):
            return Not(self.not_expr())
        return self.primary()

    def primary(self) -> Expr:
        if self.tok.kind == "lparen":
            self.advance()
            expr = self.or_expr()
            self.expect("rparen", "')'")
            return expr
        return self.comparison()

    def field(self) -> Field:
        tok = self.tok
        if tok.kind != "name" or tok.text.lower() not in ENTITY_ALIASES:
            raise _fail(
                self.source,
                tok.pos,
                "expected a field such as metrics.<key>, params.<key>, tags.<key> or attributes.<name>",
            )
        self.advance()
        entity = ENTITY_ALIASES[tok.text.lower()]
        self.expect("dot", f"'.' after {tok.text!r}")
        return Field(entity, self.key())

    def key(self) -> str:
        tok = self.tok
        if tok.kind in ("quoted_name", "string"):
            self.advance()
            assert isinstance(tok.value, str)
            if not tok.value:
                raise _fail(self.source, tok.pos, "empty key")
            return tok.value
        if tok.kind not in ("name", "number"):
            raise _fail(self.source, tok.pos, "expected a key (quote keys with odd characters in `backticks`)")
        # An unquoted key is names joined by '.' or '/' with no spaces: metrics.val.auc, metrics.train/loss.
        parts = [self.advance().text]
        while self.tok.kind == "dot" or (self.tok.kind == "op" and self.tok.text == "/"):
            joiner = self.tok
            nxt = self.tokens[self.i + 1]
            if nxt.kind not in ("name", "number") or nxt.pos != joiner.pos + 1:
                raise _fail(self.source, joiner.pos, "expected a key part after it")
            self.i += 2
            parts.extend((joiner.text, nxt.text))
        return "".join(parts)

    def literal(self) -> Scalar:
        tok = self.tok
        if tok.kind in ("number", "string"):
            self.advance()
            assert tok.value is not None
            return tok.value
        raise _fail(self.source, tok.pos, "expected a number or a quoted string")

    def comparison(self) -> Comparison:
        field = self.field()
        tok = self.tok
        if tok.kind == "op" and tok.text != "/":
            self.advance()
            op = {"==": "=", "<>": "!="}.get(tok.text, tok.text)
            return Comparison(field, op, self.literal())
        negated = self.keyword("not")
        if self.keyword("like") or self.keyword("ilike"):
            word = self.tokens[self.i - 1].text.upper()
            pattern_tok = self.tok
            pattern = self.literal()
            if not isinstance(pattern, str):
                raise _fail(self.source, pattern_tok.pos, f"{word} needs a quoted pattern")
            return Comparison(field, f"NOT {word}" if negated else word, pattern)
        if self.keyword("in"):
            self.expect("lparen", "'(' after IN")
            values = [self.literal()]
            while self.tok.kind == "comma":
                self.advance()
                values.append(self.literal())
            self.expect("rparen", "')' closing the IN list")
            return Comparison(field, "NOT IN" if negated else "IN", tuple(values))
        if negated:
            raise _fail(self.source, self.tok.pos, "expected LIKE, ILIKE or IN after NOT")
        if self.keyword("is"):
            is_not = self.keyword("not")
            if not self.keyword("null"):
                raise _fail(self.source, self.tok.pos, "expected NULL after IS")
            return Comparison(field, "IS NOT NULL" if is_not else "IS NULL", None)
        raise _fail(self.source, tok.pos, "expected a comparison operator (=, !=, <, <=, >, >=, LIKE, IN, IS)")


def parse_filter(source: str) -> Expr:
    """Parse a filter string into an AST, raising FilterSyntaxError naming the position of the first error."""
    if not isinstance(source, str):
        raise FilterSyntaxError(f"filter must be a string, got {type(source).__name__}", field="filter")
    return _Parser(source).parse()


def parse_field(source: str) -> Field:
    """Parse a lone field reference such as ``metrics.auc`` or ``params.`odd key```."""
    parser = _Parser(source)
    field = parser.field()
    if parser.tok.kind != "eof":
        raise _fail(source, parser.tok.pos, "expected the end of the field")
    return field
