"""Every error mlpilot raises on purpose derives from :class:`MlpilotError`.

Each class knows the HTTP status the control plane answers with and the exit code the CLI ends with, so callers
branch on types, never on error-code strings::

    MlpilotError                      500  exit 1
    ├── ConfigError                   500  exit 78   a setting is missing or has a bad value (names the key)
    ├── InvalidInputError             400  exit 2    bad input from a caller (names the field)
    │   └── FilterSyntaxError         400  exit 2    a run-search filter that does not parse
    ├── NotFoundError                 404  exit 3    an experiment, run, model, version or alias does not exist
    ├── AlreadyExistsError            409  exit 4    a unique name is taken
    ├── ConflictError                 409  exit 4    the object is in a state that forbids the operation
    ├── AuthenticationError           401  exit 5    no token, or a token that is unknown or revoked
    ├── PermissionDeniedError         403  exit 5    the token's role may not do this
    ├── ArtifactError                 500  exit 6    the artifact store failed
    │   ├── UnsafePathError           400  exit 2    an artifact name with '..', an absolute path or a NUL byte
    │   └── IntegrityError            500  exit 6    stored bytes do not match their SHA-256: never loaded
    ├── StoreError                    503  exit 7    the metadata database failed or is unreachable
    ├── RemoteError                   502  exit 8    a remote mlpilot server answered with an unexpected error
    ├── ServiceUnavailableError       503  exit 9    temporarily overloaded: retry later
    └── MissingDependencyError        500  exit 10   an optional extra is not installed (prints the pip command)

Errors wrap library exceptions at the boundary with ``raise ... from exc``.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AlreadyExistsError",
    "ArtifactError",
    "AuthenticationError",
    "ConfigError",
    "ConflictError",
    "FilterSyntaxError",
    "IntegrityError",
    "InvalidInputError",
    "MissingDependencyError",
    "MlpilotError",
    "NotFoundError",
    "PermissionDeniedError",
    "RemoteError",
    "ServiceUnavailableError",
    "StoreError",
    "UnsafePathError",
    "error_from_payload",
]


class MlpilotError(Exception):
    """Root of every error mlpilot raises on purpose."""

    http_status: ClassVar[int] = 500
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, *, field: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The JSON body the control plane answers with."""
        body: dict[str, Any] = {"error": type(self).__name__, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        if self.details:
            body["details"] = self.details
        return body


class ConfigError(MlpilotError):
    exit_code = 78  # EX_CONFIG

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message, field=key)
        self.key = key


class InvalidInputError(MlpilotError):
    http_status = 400
    exit_code = 2


class FilterSyntaxError(InvalidInputError):
    pass


class NotFoundError(MlpilotError):
    http_status = 404
    exit_code = 3


class AlreadyExistsError(MlpilotError):
    http_status = 409
    exit_code = 4


class ConflictError(MlpilotError):
    http_status = 409
    exit_code = 4


class AuthenticationError(MlpilotError):
    http_status = 401
    exit_code = 5


class PermissionDeniedError(MlpilotError):
    http_status = 403
    exit_code = 5


class ArtifactError(MlpilotError):
    exit_code = 6


class UnsafePathError(ArtifactError):
    http_status = 400
    exit_code = 2


class IntegrityError(ArtifactError):
    pass


class StoreError(MlpilotError):
    http_status = 503
    exit_code = 7


class RemoteError(MlpilotError):
    http_status = 502
    exit_code = 8


class ServiceUnavailableError(MlpilotError):
    http_status = 503
    exit_code = 9


class MissingDependencyError(MlpilotError):
    exit_code = 10

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed; install it with: pip install 'mlpilot[{extra}]'",
            package=package,
            extra=extra,
        )
        self.package = package
        self.extra = extra


def _all_subclasses(cls: type[MlpilotError]) -> dict[str, type[MlpilotError]]:
    found: dict[str, type[MlpilotError]] = {cls.__name__: cls}
    for sub in cls.__subclasses__():
        found.update(_all_subclasses(sub))
    return found


def error_from_payload(status: int, body: Any) -> MlpilotError:
    """Rebuild the error a remote server raised from its JSON body, so remote and local callers see one type."""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        cls = _all_subclasses(MlpilotError).get(body["error"])
        message = str(body.get("message", ""))
        if cls is not None and cls not in (ConfigError, MissingDependencyError):
            err = cls(message, field=body.get("field"))
            err.details = dict(body.get("details") or {})
            return err
        if message:
            return RemoteError(f"server answered {status}: {message}", status=status)
    by_status: dict[int, type[MlpilotError]] = {
        400: InvalidInputError,
        401: AuthenticationError,
        403: PermissionDeniedError,
        404: NotFoundError,
        409: ConflictError,
        503: ServiceUnavailableError,
    }
    if not body and status in by_status:  # e.g. the answer to a HEAD request carries no body
        return by_status[status](f"server answered {status}", status=status)
    return RemoteError(f"server answered {status}: {str(body)[:200]}", status=status)
