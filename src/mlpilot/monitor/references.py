"""Reference profiles of model versions: profiled once from the stored training sample, kept as artifacts.

The registry stores a sample of each version's training inputs (Parquet, ``sample_sha256``). Its profile is the
reference every later check of that version compares with. When a model loader is available the model is run
on the sample too, so the reference also holds the prediction distribution (and class probabilities, for the
``score`` column). A profile depends on how the endpoint is monitored (segment fields, label and output
columns), so it is stored per (version, parameters): the JSON goes to the content-addressed artifact store,
the digest to ``monitor_profiles``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from mlpilot.artifacts import ArtifactStore
from mlpilot.errors import ArtifactError, ConflictError, MlpilotError
from mlpilot.monitor.entities import EndpointConfig

__all__ = ["ModelLoader", "main_output", "profile_params", "reference_table"]

logger = logging.getLogger("mlpilot.monitor")

#: ``loader(model_name, version)`` returns an object with ``predict(data)`` (and ``predict_proba`` when
#: ``has_proba``), e.g. a :class:`mlpilot.registry.Predictor`.
ModelLoader = Callable[[str, int], Any]
PROBABILITIES = "probabilities"


def main_output(signature: dict[str, Any] | None) -> str:
    """The name the model server logs a version's prediction under: its first declared output, or ``output``."""
    outputs = (signature or {}).get("outputs") or []
    names = [str(o.get("name")) for o in outputs if isinstance(o, dict) and o.get("name")]
    names = [n for n in names if n != PROBABILITIES]
    return names[0] if names else "output"


def profile_params(config: EndpointConfig, prediction: str) -> dict[str, Any]:
    """What shapes a reference profile; its digest keys the stored profile."""
    return {
        "segments": sorted(config.segments),
        "prediction": prediction,
        "score": config.score,
        "label": config.label,
        "task": config.task,
        "positive_label": config.positive_label,
        "format": 1,
    }


def params_digest(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


def read_parquet_bytes(data: bytes, digest: str) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(pa.BufferReader(data))
    except pa.ArrowException as exc:
        raise ArtifactError(f"training sample {digest} is not a readable Parquet file: {exc}") from exc


def _output_columns(name: str, result: Any, rows: int) -> dict[str, Any]:
    """Model output as named 1-D columns, split like the model server splits them (``name_0`` ...)."""
    if hasattr(result, "columns") and hasattr(result, "iloc"):
        return {str(c): result[c].to_numpy() for c in result.columns}
    arr = result.to_numpy() if hasattr(result, "to_numpy") else np.asarray(result)
    if arr.ndim == 0 or arr.shape[0] != rows:
        raise MlpilotError(f"the model returned shape {list(arr.shape)} for {rows} rows")
    if arr.ndim == 1:
        return {name: arr}
    if arr.ndim == 2:
        return {f"{name}_{j}": arr[:, j] for j in range(arr.shape[1])}
    raise MlpilotError(f"output {name!r} has {arr.ndim} dimensions; only 1-D and 2-D outputs are profiled")


def reference_table(
    sample: Any,
    *,
    model: str,
    version: int,
    prediction: str,
    config: EndpointConfig,
    loader: ModelLoader | None,
    notes: list[str],
) -> Any:
    """The training sample plus the model's outputs on it (when it can be loaded), as an Arrow table."""
    import pyarrow as pa

    if loader is None:
        notes.append("no model loader: the reference holds inputs only (the prediction's drift is not tested)")
        return sample
    inputs = sample.drop_columns([c for c in (config.label,) if c in sample.column_names])
    try:
        predictor = loader(model, version)
        columns = _output_columns(prediction, predictor.predict(inputs), inputs.num_rows)
        if config.score is not None and config.score.startswith(f"{PROBABILITIES}_"):
            if getattr(predictor, "has_proba", False):
                columns.update(_output_columns(PROBABILITIES, predictor.predict_proba(inputs), inputs.num_rows))
            else:
                notes.append(f"score {config.score!r}: the model has no predict_proba")
    except Exception as exc:  # the model is user code: whatever it raises, the inputs are still profiled
        logger.warning("reference of %s v%s: cannot run the model on its sample: %s", model, version, exc)
        notes.append(f"the model could not be run on its training sample ({type(exc).__name__}: {exc})")
        return sample
    table = sample
    for name, values in columns.items():
        if name in table.column_names:
            continue  # an input of the same name wins, as in the log's flattened window
        try:
            table = table.append_column(name, pa.array(values))
        except (pa.ArrowException, TypeError, ValueError) as exc:
            notes.append(f"output {name!r} could not be stored: {exc}")
    return table


def load_sample(artifacts: ArtifactStore, digest: str | None, subject: str) -> Any:
    if digest is None:
        raise ConflictError(
            f"{subject} has no stored training sample to profile; register it with "
            "log_model(..., training_data=...) or input_example=...",
            field="sample_sha256",
        )
    return read_parquet_bytes(artifacts.get_bytes(digest), digest)  # hash-verified by the store
