"""``log_model``: detect the flavor, infer the signature, save and pack the model, store the sample, register.

The heavy work happens in the caller's process; the registry (local or remote) receives only metadata and the
SHA-256 digests of blobs already in the artifact store.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mlpilot.artifacts import ArtifactStore
from mlpilot.errors import InvalidInputError, MlpilotError
from mlpilot.registry.archive import pack_dir
from mlpilot.registry.backend import RegistryBackend
from mlpilot.registry.entities import ModelVersionInfo, NewModelVersion
from mlpilot.registry.flavors import Flavor, detect_flavor, get_flavor
from mlpilot.registry.flavors.base import distribution_version
from mlpilot.registry.inputs import canonical
from mlpilot.registry.predictor import FORMAT_VERSION, META_FILE, MODEL_DIR
from mlpilot.registry.sample import sample_parquet
from mlpilot.registry.signature import Signature, infer_signature
from mlpilot.registry.uri import check_alias, check_model_name
from mlpilot.tracking import ActiveRun, active_run

__all__ = ["log_model"]

_PENDING = "0" * 64


def _run_id(run: str | ActiveRun | None) -> str | None:
    if run is None:
        run = active_run()
    if run is None:
        return None
    if isinstance(run, ActiveRun):
        run.flush()  # datasets logged to the run must be durable before the registry links them
        return run.id
    if not isinstance(run, str) or not run:
        raise InvalidInputError(f"run: expected a run id or an ActiveRun, got {run!r}", field="run")
    return run


def _signature(flavor: Flavor, model: Any, input_example: Any) -> Signature | None:
    if input_example is None:
        return flavor.describe(model)
    handle = flavor.wrap(model)
    try:
        return infer_signature(input_example, handle.predict)
    except MlpilotError:
        raise
    except Exception as exc:  # whatever the model raises on its own example
        raise InvalidInputError(
            f"input_example: the model failed to predict on it: {type(exc).__name__}: {exc}",
            field="input_example",
        ) from exc


def _requirements(flavor: Flavor, signature: Signature | None, extra: Sequence[str]) -> list[str]:
    found = flavor.requirements()
    if signature is not None and signature.kind == "dataframe":
        found.append(distribution_version("pandas") or "pandas")
    found.append(distribution_version("mlpilot") or "mlpilot")
    for req in extra:
        if not isinstance(req, str) or not req.strip():
            raise InvalidInputError(
                f"requirements: expected pip requirement strings, got {req!r}", field="requirements"
            )
        found.append(req.strip())
    return list(dict.fromkeys(found))


def _pack(
    flavor: Flavor, model: Any, example: Any, signature: Signature | None, requirements: list[str], tmp: Path
) -> Path:
    root = tmp / "archive"
    (root / MODEL_DIR).mkdir(parents=True)
    flavor_meta = flavor.save(model, root / MODEL_DIR, example)
    meta = {
        "format_version": FORMAT_VERSION,
        "flavor": flavor.name,
        "flavor_meta": flavor_meta,
        "signature": signature.model_dump(mode="json") if signature is not None else None,
        "requirements": requirements,
    }
    (root / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")
    return pack_dir(root, tmp / "model.tar.gz")


def log_model(
    model: Any,
    name: str,
    *,
    registry: RegistryBackend,
    artifacts: ArtifactStore,
    input_example: Any = None,
    run: str | ActiveRun | None = None,
    training_data: Any = None,
    metrics: Mapping[str, float] | None = None,
    description: str | None = None,
    tags: Mapping[str, str] | None = None,
    aliases: Sequence[str] | None = None,
    flavor: str | None = None,
    requirements: Sequence[str] = (),
    lineage: Mapping[str, Any] | None = None,
    actor: str = "local",
) -> ModelVersionInfo:
    """Register ``model`` as the next version of ``name`` and return that version.

    The flavor is detected from the model (or forced with ``flavor=``). With ``input_example`` the signature
    is inferred (inputs from the example, outputs by running the model on it); a sample of ``training_data``
    (or of the example) of at most 10,000 rows is stored as Parquet for drift reference. ``run`` (default: the
    active run) links the version to its run and the run's datasets. ``aliases`` are pointed at the new
    version in the same transaction that creates it.

    >>> version = log_model(clf, "churn", registry=registry, artifacts=artifacts,
    ...                     input_example=X[:5], aliases=["challenger"])  # doctest: +SKIP
    >>> version.uri  # doctest: +SKIP
    'models:/churn/1'
    """
    check_model_name(name)
    for alias in aliases or ():
        check_alias(alias, field="aliases")  # before any upload, so a typo costs nothing
    chosen = get_flavor(flavor) if flavor is not None else detect_flavor(model)
    run_id = _run_id(run)
    signature = _signature(chosen, model, input_example)
    example = canonical(input_example)[1] if input_example is not None else None
    reqs = _requirements(chosen, signature, requirements)
    try:
        # Validated before anything is uploaded; the digests are filled in once the blobs are stored.
        new = NewModelVersion(
            flavor=chosen.name,
            artifact_sha256=_PENDING,
            artifact_size=0,
            signature=signature,
            requirements=reqs,
            run_id=run_id,
            metrics=dict(metrics or {}),
            tags=dict(tags or {}),
            description=description or "",
            lineage=dict(lineage or {}),
            aliases=list(aliases or ()),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "model"
        raise InvalidInputError(f"{field}: {first['msg']}", field=field) from exc
    sample_source = training_data if training_data is not None else input_example
    sample = sample_parquet(sample_source) if sample_source is not None else None
    with tempfile.TemporaryDirectory(prefix="mlpilot-log-") as tmp:
        archive = _pack(chosen, model, example, signature, reqs, Path(tmp))
        # Uploads come last, once everything that can fail on the caller's input has succeeded.
        artifact_sha256 = artifacts.put_file(archive)
        artifact_size = archive.stat().st_size
    sample_sha256 = artifacts.put_bytes(sample) if sample is not None else None
    new = new.model_copy(
        update={
            "artifact_sha256": artifact_sha256,
            "artifact_size": artifact_size,
            "sample_sha256": sample_sha256,
        }
    )
    return registry.create_model_version(name, new, actor=actor)
