from __future__ import annotations

import pytest

from mlpilot import errors
from mlpilot.errors import (
    AlreadyExistsError,
    FilterSyntaxError,
    IntegrityError,
    MissingDependencyError,
    MlpilotError,
    NotFoundError,
    RemoteError,
    error_from_payload,
)


def _tree(cls: type[MlpilotError]) -> list[type[MlpilotError]]:
    out = [cls]
    for sub in cls.__subclasses__():
        out += _tree(sub)
    return out


def test_every_error_is_drawn_in_the_module_docstring() -> None:
    assert errors.__doc__ is not None
    for cls in _tree(MlpilotError):
        if cls.__module__ == "mlpilot.errors":
            assert cls.__name__ in errors.__doc__


@pytest.mark.parametrize(
    ("cls", "status", "code"),
    [(NotFoundError, 404, 3), (AlreadyExistsError, 409, 4), (FilterSyntaxError, 400, 2), (IntegrityError, 500, 6)],
)
def test_errors_carry_status_and_exit_code(cls: type[MlpilotError], status: int, code: int) -> None:
    assert cls.http_status == status
    assert cls.exit_code == code


def test_error_round_trips_through_its_json_body() -> None:
    err = NotFoundError("no model 'x'", field="name")
    again = error_from_payload(404, err.to_dict())
    assert type(again) is NotFoundError
    assert again.message == "no model 'x'"
    assert again.field == "name"


@pytest.mark.parametrize("body", ["<html>bad gateway</html>", {"error": "Nonsense", "message": "m"}, None])
def test_unknown_bodies_become_remote_errors(body: object) -> None:
    assert isinstance(error_from_payload(502, body), RemoteError)


def test_missing_dependency_prints_the_install_command() -> None:
    assert "pip install 'mlpilot[redis]'" in str(MissingDependencyError("redis", "redis"))


def test_bodiless_answers_map_by_status() -> None:
    assert isinstance(error_from_payload(404, ""), NotFoundError)
    assert isinstance(error_from_payload(418, ""), RemoteError)
