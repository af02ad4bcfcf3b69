"""Where applied feature definitions are kept: a tiny backend contract and a local JSON-file implementation.

The metadata-store backend (:class:`~mlpilot.features.StoreFeatureRegistry`, versioned specs in the mlpilot
database) and the REST one (:class:`~mlpilot.features.RestFeatureStore`) implement the same
:class:`FeatureRegistryBackend`; :func:`mlpilot.features.apply_definitions` only talks to the contract.

    >>> import tempfile, pathlib
    >>> registry = LocalJsonRegistry(pathlib.Path(tempfile.mkdtemp()) / "features.json")
    >>> registry.load_specs().version
    0
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from mlpilot.errors import ConflictError, StoreError

__all__ = ["FeatureRegistryBackend", "LocalJsonRegistry", "RegisteredSpecs"]


@dataclass(frozen=True)
class RegisteredSpecs:
    """The applied specs and the version they were applied as (0: nothing applied yet)."""

    version: int
    specs: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)


@runtime_checkable
class FeatureRegistryBackend(Protocol):
    """Stores the full set of definition specs, replaced as a whole.

    Contract:

    - ``load_specs()`` returns the last applied set and its version (0 and no specs before the first apply).
    - ``apply(specs, expected_version=v, actor=...)`` atomically replaces the whole set and returns the new
      version (v + 1). If the stored version is no longer ``v`` it raises :class:`~mlpilot.errors.ConflictError`
      and changes nothing, so two concurrent applies never leave a mix: one wins, the other re-plans.
    """

    def load_specs(self) -> RegisteredSpecs: ...

    def apply(
        self, specs: Sequence[Mapping[str, Any]], *, expected_version: int | None = None, actor: str = "local"
    ) -> int: ...


class LocalJsonRegistry:
    """Specs in one JSON file, replaced atomically (write a temporary file, then rename) under a file lock."""

    def __init__(self, path: str | Path) -> None:
        from filelock import FileLock

        self.path = Path(path)
        self._lock = FileLock(str(self.path) + ".lock")

    def load_specs(self) -> RegisteredSpecs:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return RegisteredSpecs(0)
        except OSError as exc:
            raise StoreError(f"cannot read feature registry {self.path}: {exc}") from exc
        try:
            data = json.loads(text)
            return RegisteredSpecs(int(data["version"]), tuple(data["specs"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"feature registry {self.path} is corrupt: {exc}") from exc

    def apply(
        self, specs: Sequence[Mapping[str, Any]], *, expected_version: int | None = None, actor: str = "local"
    ) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            current = self.load_specs().version
            if expected_version is not None and current != expected_version:
                raise ConflictError(
                    f"feature registry changed since it was planned (version {current}, expected "
                    f"{expected_version}): plan again",
                    expected_version=expected_version,
                    version=current,
                )
            version = current + 1
            body = json.dumps({"version": version, "applied_by": actor, "specs": list(specs)}, indent=1, sort_keys=True)
            fd, tmp = tempfile.mkstemp(prefix=".features-", suffix=".json.tmp", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(body)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, self.path)
            except OSError as exc:
                Path(tmp).unlink(missing_ok=True)
                raise StoreError(f"cannot write feature registry {self.path}: {exc}") from exc
            return version
