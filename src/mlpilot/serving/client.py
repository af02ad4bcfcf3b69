"""A Python client for a running ``mlpilot serve``: plain JSON predictions, OIP inference with binary tensors,
and the MLflow route, with server errors raised as the same :mod:`mlpilot.errors` types the server used.

>>> client = ServingClient("http://127.0.0.1:8080")  # doctest: +SKIP
>>> client.predict("churn", [[0.1, 2.0, 3.5]]).predictions  # doctest: +SKIP
[1]
>>> client.infer("churn", {"input": np.array([[0.1, 2.0, 3.5]])}).outputs["probabilities"]  # doctest: +SKIP
array([[0.2, 0.8]])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from mlpilot.errors import MlpilotError, RemoteError, error_from_payload
from mlpilot.serving import oip
from mlpilot.serving.dtypes import numpy_dtype
from mlpilot.serving.errors import OverloadedError

__all__ = ["InferResult", "Prediction", "ServingClient"]


@dataclass(frozen=True)
class Prediction:
    """The answer of ``/v1/models/{m}:predict``."""

    predictions: Any
    model: str
    version: int
    request_id: str
    outputs: dict[str, Any]


@dataclass(frozen=True)
class InferResult:
    """The answer of an OIP inference: output arrays by name."""

    outputs: dict[str, np.ndarray[Any, Any]]
    model: str
    version: str
    request_id: str


def _datatype(arr: np.ndarray[Any, Any]) -> str:
    from mlpilot.serving.dtypes import oip_datatype

    return "BYTES" if arr.dtype.kind in "OUS" else oip_datatype(str(arr.dtype))


class ServingClient:
    """Talks to one model server over HTTP (keep-alive, one connection pool)."""

    def __init__(self, url: str, *, timeout: float = 30.0, headers: Mapping[str, str] | None = None) -> None:
        import httpx

        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout, headers=dict(headers or {}))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ServingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self, response: Any) -> Any:
        if response.status_code == 200:
            return response
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if isinstance(body, dict) and "type" in body:
            if response.status_code == 503:
                retry = float(response.headers.get("retry-after", "1"))
                raise OverloadedError(str(body.get("error")), retry_after=retry)
            err = error_from_payload(
                response.status_code,
                {"error": body["type"], "message": body.get("error"), "field": body.get("field")},
            )
            err.details.update({k: body[k] for k in ("expected", "got", "request_id") if k in body})
            raise err
        raise RemoteError(f"server answered {response.status_code}: {str(body)[:300]}", status=response.status_code)

    @staticmethod
    def _path(model: str, version: int | None, suffix: str) -> str:
        base = f"/{model}" if version is None else f"/{model}/versions/{version}"
        return base + suffix

    def predict(
        self,
        model: str,
        instances: Any,
        *,
        version: int | None = None,
        outputs: Sequence[str] | None = None,
        entity_id: str | Sequence[str] | None = None,
        segments: Mapping[str, str] | None = None,
        request_id: str | None = None,
    ) -> Prediction:
        """Rows (lists, or objects keyed by input name) through ``/v1/models/{model}:predict``."""
        body: dict[str, Any] = {"instances": instances}
        if outputs:
            body["outputs"] = list(outputs)
        if entity_id is not None:
            body["entity_id"] = entity_id if isinstance(entity_id, str) else list(entity_id)
        if segments:
            body["segments"] = dict(segments)
        headers = {"content-type": "application/json"}
        if request_id:
            headers["x-request-id"] = request_id
        path = "/v1/models" + self._path(model, version, ":predict")
        doc = self._check(
            self._http.post(path, content=orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), headers=headers)
        ).json()
        return Prediction(doc["predictions"], doc["model"], doc["version"], doc["request_id"], doc.get("outputs", {}))

    def infer(
        self,
        model: str,
        inputs: Mapping[str, Any],
        *,
        version: int | None = None,
        outputs: Sequence[str] | None = None,
        binary: bool = True,
        parameters: Mapping[str, Any] | None = None,
    ) -> InferResult:
        """OIP inference; ``binary`` sends and receives tensors with the binary extension."""
        tensors: list[dict[str, Any]] = []
        raws: list[bytes] = []
        for name, value in inputs.items():
            arr = np.asarray(value)
            datatype = _datatype(arr)
            entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(arr.shape)}
            if binary:
                raw = (
                    oip.encode_bytes(arr)
                    if datatype == "BYTES"
                    else np.ascontiguousarray(arr, dtype=numpy_dtype(datatype).newbyteorder("<")).tobytes()
                )
                entry["parameters"] = {"binary_data_size": len(raw)}
                raws.append(raw)
            else:
                entry["data"] = arr.reshape(-1).tolist()
            tensors.append(entry)
        doc: dict[str, Any] = {"inputs": tensors}
        if outputs:
            doc["outputs"] = [{"name": n, "parameters": {"binary_data": binary}} for n in outputs]
        params = dict(parameters or {})
        if not outputs and binary:
            params["binary_data_output"] = True
        if params:
            doc["parameters"] = params
        head = orjson.dumps(doc)
        headers = {"content-type": "application/octet-stream" if binary else "application/json"}
        if binary:
            headers["inference-header-content-length"] = str(len(head))
        path = "/v2/models" + self._path(model, version, "/infer")
        response = self._check(self._http.post(path, content=head + b"".join(raws), headers=headers))
        return _decode_infer(response.content, response.headers.get("inference-header-content-length"))

    def invocations(self, payload: Mapping[str, Any], *, model: str | None = None) -> Any:
        """MLflow's scoring route; returns the ``predictions``."""
        params = {"model": model} if model else None
        response = self._http.post(
            "/invocations",
            content=orjson.dumps(dict(payload), option=orjson.OPT_SERIALIZE_NUMPY),
            headers={"content-type": "application/json"},
            params=params,
        )
        return self._check(response).json()["predictions"]

    def metadata(self, model: str, *, version: int | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._check(self._http.get("/v2/models" + self._path(model, version, ""))).json()
        return result

    def ready(self) -> bool:
        try:
            return bool(self._http.get("/v2/health/ready").status_code == 200)
        except MlpilotError:
            return False

    def metrics(self) -> str:
        text: str = self._check(self._http.get("/metrics")).text
        return text


def _decode_infer(content: bytes, header_length: str | None) -> InferResult:
    size = int(header_length) if header_length else len(content)
    doc = orjson.loads(content[:size])
    binary = memoryview(content)[size:]
    offset = 0
    outputs: dict[str, np.ndarray[Any, Any]] = {}
    for out in doc["outputs"]:
        shape = out["shape"]
        datatype = out["datatype"]
        params = out.get("parameters") or {}
        if "binary_data_size" in params:
            raw = binary[offset : offset + params["binary_data_size"]]
            offset += params["binary_data_size"]
            if datatype == "BYTES":
                arr = oip.decode_bytes(raw, math.prod(shape), out["name"]).reshape(shape)
            else:
                arr = np.frombuffer(raw, dtype=numpy_dtype(datatype).newbyteorder("<")).reshape(shape)
        else:
            arr = np.asarray(out["data"], dtype=numpy_dtype(datatype)).reshape(shape)
        outputs[out["name"]] = arr
    return InferResult(outputs, doc["model_name"], doc["model_version"], doc["id"])
