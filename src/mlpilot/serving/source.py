"""What the server needs from the outside world: predictors, and a source that resolves and loads them.

The data plane never talks to the metadata database on a request. It asks a :class:`ModelSource` two things,
both off the request path: *which version does this reference mean now* (``resolve``) and *give me that
version, hash verified, as a predictor* (``load``). :class:`mlpilot.serving.RegistrySource` implements it over
the registry;
:class:`mlpilot.serving.testing.InMemorySource` over objects already in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from mlpilot.registry.signature import Signature

__all__ = ["ModelSource", "Predictor", "ResolvedModel"]


@runtime_checkable
class Predictor(Protocol):
    """A loaded model: what :func:`mlpilot.registry.load_model` returns satisfies it.

    ``predict`` receives the signature's canonical form: one NumPy array (``kind="ndarray"``), a dict of
    arrays (``"dict"``) or a pandas DataFrame (``"dataframe"``). An optional ``predict_proba`` with the same
    argument is served as the extra output ``probabilities``.
    """

    @property
    def signature(self) -> Signature | None: ...

    def predict(self, data: Any) -> Any: ...


@dataclass(frozen=True)
class ResolvedModel:
    """One concrete model version a reference points at right now.

    ``digest`` identifies the bytes (the artifact's SHA-256): a version is reloaded only when it changes.
    """

    name: str
    version: int
    digest: str
    signature: Signature | None = None
    #: the registry flavor (``sklearn``, ``onnx``...), shown as the OIP ``platform``
    flavor: str = ""


class ModelSource(Protocol):
    """Resolves references (``churn@champion``, ``fraud/3``) and loads versions. Both calls may block
    (network, disk, unpickling): the server runs them in a worker thread, never on the event loop.

    - ``resolve(ref)`` returns the version the reference means now, raising
      :class:`~mlpilot.errors.NotFoundError` if there is none.
    - ``load(model)`` returns a predictor for that version after verifying its artifact's hash, raising an
      :class:`~mlpilot.errors.MlpilotError` (``IntegrityError`` for corrupt bytes) if it cannot.

    A source may also offer ``export(model, folder) -> dict``: the version's archive fetched into ``folder``
    and what :func:`mlpilot.registry.load_archive` needs, as JSON (see
    :meth:`~mlpilot.serving.RegistrySource.export`). With it, the shadow lane runs that version in its own
    worker process; without it (objects already in memory), in a thread of the server.
    """

    def resolve(self, ref: str) -> ResolvedModel: ...

    def load(self, model: ResolvedModel) -> Predictor: ...
