"""Loading a registered version into one predictor interface, after verifying its artifact.

Loading order matters for safety: resolve the version, download its archive (the artifact store checks the
SHA-256, and so do we), check every archive member, unpack, and only then let the flavor read files.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from mlpilot.artifacts import ArtifactStore, sha256_file
from mlpilot.errors import (
    ArtifactError,
    ConflictError,
    IntegrityError,
    InvalidInputError,
    PermissionDeniedError,
)
from mlpilot.registry.archive import unpack
from mlpilot.registry.backend import RegistryBackend
from mlpilot.registry.entities import ModelVersionInfo
from mlpilot.registry.flavors import Handle, get_flavor
from mlpilot.registry.inputs import conform
from mlpilot.registry.signature import Signature

__all__ = ["META_FILE", "MODEL_DIR", "Predictor", "load_archive", "load_model"]

#: the archive's own description, next to the flavor's folder
META_FILE = "mlpilot-model.json"
MODEL_DIR = "model"
FORMAT_VERSION = 1


class Predictor:
    """A loaded model version: ``predict`` (and ``predict_proba`` when ``has_proba``) over NumPy, pandas,
    Arrow, dicts of arrays or lists, converted to what the model takes according to its signature.

    >>> predictor = load_model("models:/churn@champion", registry, artifacts)  # doctest: +SKIP
    >>> predictor.predict(frame)  # doctest: +SKIP
    """

    def __init__(self, handle: Handle, version_info: ModelVersionInfo | None, signature: Signature | None) -> None:
        self._handle = handle
        self.version_info = version_info
        self.signature = signature

    @property
    def has_proba(self) -> bool:
        return self._handle.predict_proba is not None

    @property
    def model(self) -> Any:
        """The library object behind the predictor (an estimator, a Booster, an InferenceSession, ...)."""
        return self._handle.raw

    def predict(self, data: Any) -> Any:
        return self._handle.predict(conform(data, self.signature))

    def predict_proba(self, data: Any) -> Any:
        """Class probabilities; :class:`ConflictError` for a model without them (check ``has_proba``)."""
        if self._handle.predict_proba is None:
            what = f"model {self.version_info.uri}" if self.version_info else "this model"
            raise ConflictError(f"{what} has no predict_proba (it is not a probabilistic classifier)")
        return self._handle.predict_proba(conform(data, self.signature))

    def __repr__(self) -> str:
        what = self.version_info.uri if self.version_info else "unregistered"
        flavor = self.version_info.flavor if self.version_info else "?"
        return f"<Predictor {what} flavor={flavor}>"


def read_archive(folder: Path, expected_flavor: str | None) -> tuple[Handle, dict[str, Any]]:
    """Load the model in an unpacked archive folder; return its handle and the archive's metadata."""
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"the model archive has no readable {META_FILE}: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"unsupported model archive format {meta.get('format_version')!r}")
    if expected_flavor is not None and meta.get("flavor") != expected_flavor:
        raise IntegrityError(
            f"the archive holds a {meta.get('flavor')!r} model but the registry says {expected_flavor!r}"
        )
    flavor = get_flavor(str(meta.get("flavor")))
    flavor_meta = meta.get("flavor_meta")
    if not isinstance(flavor_meta, dict):
        raise ArtifactError("the model archive has no flavor metadata")
    return flavor.load(folder / MODEL_DIR, flavor_meta), meta


def load_model(
    uri: str | ModelVersionInfo,
    registry: RegistryBackend | None,
    artifacts: ArtifactStore,
    *,
    allow_pickle: bool = True,
) -> Predictor:
    """Load ``models:/name@alias``, ``models:/name/3``, ``models:/name/latest`` (or a version's info, which
    needs no registry) into a :class:`Predictor`.

    The archive is hash-verified before a byte of it is parsed; ``allow_pickle=False`` refuses the one flavor
    whose format runs code on load (``pyfunc``).
    """
    if isinstance(uri, ModelVersionInfo):
        info = uri
    else:
        if registry is None:
            raise InvalidInputError("registry: resolving a model URI needs a registry", field="registry")
        info = registry.resolve(uri)
    _refuse_pickle(info, allow_pickle)
    get_flavor(info.flavor)  # an unknown flavor fails before any download
    with tempfile.TemporaryDirectory(prefix="mlpilot-model-") as tmp:
        archive = Path(tmp) / "model.tar.gz"
        artifacts.get_file(info.artifact_sha256, archive)
        # The store verified the digest; checking again keeps us safe with any ArtifactStore.
        return load_archive(archive, info, allow_pickle=allow_pickle)


def _refuse_pickle(info: ModelVersionInfo, allow_pickle: bool) -> None:
    if info.flavor == "pyfunc" and not allow_pickle:
        raise PermissionDeniedError(
            f"{info.uri} is a pickled Python model and allow_pickle=False", field="allow_pickle"
        )


def load_archive(archive: Path, info: ModelVersionInfo, *, allow_pickle: bool = True) -> Predictor:
    """Load ``info``'s version from its archive file, already fetched: the file's SHA-256 must match the
    registry's before a byte of it is parsed (how a shadow worker process loads what the server fetched)."""
    _refuse_pickle(info, allow_pickle)
    if sha256_file(archive) != info.artifact_sha256:
        raise IntegrityError(f"the artifact of {info.uri} does not match its SHA-256: refusing to load it")
    with tempfile.TemporaryDirectory(prefix="mlpilot-model-") as tmp:
        folder = unpack(archive, Path(tmp) / "unpacked")
        handle, _meta = read_archive(folder, info.flavor)
    return Predictor(handle, info, info.signature)
