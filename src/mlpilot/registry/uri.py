"""Model names, alias names, and model URIs such as ``models:/churn@champion`` or ``churn/3``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mlpilot.errors import InvalidInputError

__all__ = ["ModelUri", "check_alias", "check_model_name", "parse_model_uri"]

# Names end up in URIs (``name/3``, ``name@alias``) and URL paths, so '/', '@' and ':' are excluded.
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,127}$")
_SCHEME = "models:/"
#: Alias names with a fixed meaning that users may not claim.
RESERVED_ALIASES = frozenset({"latest"})


def check_model_name(name: str, *, field: str = "name") -> str:
    """Return ``name`` if it is a valid registered-model name, else raise :class:`InvalidInputError`.

    >>> check_model_name("churn-v2")
    'churn-v2'
    """
    if not isinstance(name, str) or not _MODEL_NAME.match(name):
        raise InvalidInputError(
            f"{field}: a model name is 1-128 letters, digits, '_', '.' or '-', starting with a letter or "
            f"digit; got {name!r}",
            field=field,
        )
    return name


def check_alias(alias: str, *, field: str = "alias") -> str:
    """Return ``alias`` if it matches ``[a-z][a-z0-9_-]*`` (at most 128 characters) and is not reserved.

    >>> check_alias("champion")
    'champion'
    """
    if not isinstance(alias, str) or not _ALIAS.match(alias):
        raise InvalidInputError(
            f"{field}: an alias matches [a-z][a-z0-9_-]* (at most 128 characters), got {alias!r}", field=field
        )
    if alias in RESERVED_ALIASES:
        raise InvalidInputError(f"{field}: {alias!r} is reserved (it always means the newest version)", field=field)
    return alias


@dataclass(frozen=True)
class ModelUri:
    """A parsed model reference: exactly one of ``version``, ``alias`` or ``latest`` is set."""

    name: str
    version: int | None = None
    alias: str | None = None
    latest: bool = False

    def __str__(self) -> str:
        if self.alias is not None:
            return f"{_SCHEME}{self.name}@{self.alias}"
        if self.latest:
            return f"{_SCHEME}{self.name}/latest"
        return f"{_SCHEME}{self.name}/{self.version}"


def parse_model_uri(uri: str) -> ModelUri:
    """Parse ``models:/<name>@<alias>``, ``models:/<name>/<version>``, ``models:/<name>/latest``, or the same
    without the ``models:/`` prefix.

    >>> parse_model_uri("models:/churn@champion")
    ModelUri(name='churn', version=None, alias='champion', latest=False)
    >>> parse_model_uri("churn/3").version
    3
    """
    if not isinstance(uri, str) or not uri:
        raise InvalidInputError(f"uri: expected a model URI such as 'models:/churn@champion', got {uri!r}", field="uri")
    body = uri[len(_SCHEME) :] if uri.startswith(_SCHEME) else uri
    expected = "expected 'models:/<name>@<alias>', 'models:/<name>/<version>' or 'models:/<name>/latest'"
    if "@" in body:
        name, _, alias = body.partition("@")
        if not alias or "/" in alias:
            raise InvalidInputError(f"uri: {expected}, got {uri!r}", field="uri")
        if alias == "latest":
            return ModelUri(check_model_name(name, field="uri"), latest=True)
        return ModelUri(check_model_name(name, field="uri"), alias=check_alias(alias, field="uri"))
    name, sep, ref = body.partition("/")
    if not sep or not ref or "/" in ref:
        raise InvalidInputError(f"uri: {expected}, got {uri!r}", field="uri")
    check_model_name(name, field="uri")
    if ref == "latest":
        return ModelUri(name, latest=True)
    if not ref.isascii() or not ref.isdigit() or ref.startswith("0"):
        raise InvalidInputError(f"uri: the version must be a positive integer or 'latest', got {ref!r}", field="uri")
    return ModelUri(name, version=int(ref))
