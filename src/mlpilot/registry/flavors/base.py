"""The flavor contract: how one kind of model is recognised, saved into a folder, and loaded back.

A flavor imports its library lazily (detection looks at class modules, never imports anything), and raises
:class:`~mlpilot.errors.MissingDependencyError` naming its extra when the library is absent.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

from mlpilot.errors import MissingDependencyError

if TYPE_CHECKING:
    from mlpilot.registry.signature import Signature

__all__ = ["Flavor", "Handle", "defined_in", "distribution_version", "import_library"]


@dataclass(frozen=True)
class Handle:
    """A model ready to predict: ``predict`` and, for classifiers, ``predict_proba`` over canonical input."""

    predict: Callable[[Any], Any]
    predict_proba: Callable[[Any], Any] | None = None
    #: the library object behind the handle (an estimator, a Booster, an InferenceSession, a module, ...)
    raw: Any = None


def defined_in(model: object, package: str) -> bool:
    """Whether ``model``'s class, or one of its bases, comes from ``package`` (without importing it)."""
    return any((cls.__module__ or "").split(".", 1)[0] == package for cls in type(model).__mro__ if cls is not object)


def import_library(module: str, package: str, extra: str) -> ModuleType:
    """Import ``module`` or raise MissingDependencyError naming ``package`` and the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(package, extra) from exc


def distribution_version(*names: str) -> str | None:
    """``name==version`` of the first installed distribution among ``names`` (e.g. ``xgboost-cpu``)."""
    for name in names:
        try:
            return f"{name}=={importlib.metadata.version(name)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


class Flavor(ABC):
    """One kind of model. Subclasses set ``name``, ``extra`` and ``distributions`` and implement the methods.

    ``save`` writes the model into an empty folder and returns JSON-able metadata that ``load`` receives back
    (it travels inside the hash-verified archive, so ``load`` may trust it). ``example`` is the input example
    in canonical form (DataFrame, array or dict of arrays), or None.
    """

    name: ClassVar[str]
    #: the ``pip install 'mlpilot[<extra>]'`` that brings the library
    extra: ClassVar[str]
    #: distributions a loader needs, each as alternatives (``("xgboost", "xgboost-cpu")``)
    distributions: ClassVar[tuple[tuple[str, ...], ...]]

    @abstractmethod
    def matches(self, model: object) -> bool:
        """Whether this flavor handles ``model``; must not import the library."""

    @abstractmethod
    def wrap(self, model: Any) -> Handle:
        """A handle over an in-memory model (used to infer outputs and by tests comparing before/after)."""

    @abstractmethod
    def save(self, model: Any, folder: Path, example: Any | None) -> dict[str, Any]:
        """Write ``model`` into ``folder``; return the metadata ``load`` needs."""

    @abstractmethod
    def load(self, folder: Path, meta: dict[str, Any]) -> Handle:
        """Load the model ``save`` wrote into ``folder``."""

    def requirements(self) -> list[str]:
        """Pinned requirements of the installed libraries this flavor needs to load a model."""
        found = (distribution_version(*names) for names in self.distributions)
        return [req for req in found if req is not None]

    def describe(self, model: Any) -> Signature | None:
        """A :class:`~mlpilot.registry.signature.Signature` read from the model itself, when the format
        records one (ONNX does); None otherwise.
        """
        return None
