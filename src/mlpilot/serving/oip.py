"""The Open Inference Protocol (KServe/Triton v2) inference request and response, with the binary tensor
extension.

With the extension, a request body is a JSON header of ``Inference-Header-Content-Length`` bytes followed by
the raw tensors of the inputs whose ``parameters.binary_data_size`` is set, in input order (little-endian;
``BYTES`` elements are each prefixed with their 4-byte length). Outputs are returned the same way when the
request asks for it (``outputs[].parameters.binary_data`` or the request-level ``binary_data_output``), which
is what ``tritonclient.http`` does by default.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from mlpilot.errors import InvalidInputError
from mlpilot.serving.dtypes import OIP_DATATYPES, numpy_dtype, oip_datatype
from mlpilot.serving.errors import input_error
from mlpilot.serving.model import Outputs, ServedModel
from mlpilot.serving.schema import Columns, check_rows

__all__ = [
    "HEADER_LENGTH",
    "InferRequest",
    "decode_bytes",
    "encode_bytes",
    "encode_response",
    "json_tensor",
    "parse_request",
    "request_parameters",
    "requested_outputs",
    "split_request",
    "tensor_header",
]

HEADER_LENGTH = b"inference-header-content-length"
_OPTS = orjson.OPT_SERIALIZE_NUMPY


@dataclass
class InferRequest:
    columns: Columns
    rows: int
    #: requested outputs, in order, with whether each goes back as binary
    outputs: list[tuple[str, bool]]
    id: str | None
    parameters: dict[str, Any] = field(default_factory=dict)


def decode_bytes(raw: memoryview, count: int, name: str) -> np.ndarray[Any, Any]:
    """``BYTES`` elements from the binary extension: each a little-endian uint32 length then the bytes."""
    out = np.empty(count, dtype=object)
    pos = 0
    end = len(raw)
    for i in range(count):
        if pos + 4 > end:
            raise input_error(name, "truncated BYTES tensor", expected=f"{count} elements", got=f"{i}")
        (size,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + size > end:
            raise input_error(name, "truncated BYTES element", expected=f"{size} bytes", got=f"{end - pos}")
        chunk = bytes(raw[pos : pos + size])
        pos += size
        try:
            out[i] = chunk.decode()
        except UnicodeDecodeError:
            out[i] = chunk
    if pos != end:
        raise input_error(name, "BYTES tensor size", expected=f"{pos} bytes", got=f"{end} bytes")
    return out


def encode_bytes(arr: np.ndarray[Any, Any]) -> bytes:
    parts: list[bytes] = []
    for value in arr.reshape(-1):
        data = value if isinstance(value, bytes) else str(value).encode()
        parts.append(struct.pack("<I", len(data)))
        parts.append(data)
    return b"".join(parts)


def _shape(value: Any, name: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(d, int) and d >= 0 for d in value) or not value:
        raise input_error(name, "bad shape", expected="a list of non-negative integers", got=value)
    return value


def json_tensor(name: str, datatype: str, shape: list[int], data: Any) -> np.ndarray[Any, Any]:
    """A tensor given as JSON ``data``, checked against its datatype, as a NumPy array of ``shape``."""
    count = math.prod(shape)
    if datatype == "BYTES":
        arr = np.asarray(data, dtype=object).reshape(-1)
        if not all(isinstance(v, str) for v in arr):
            raise input_error(name, "BYTES data", expected="strings", got=sorted({type(v).__name__ for v in arr}))
    else:
        try:
            arr = np.asarray(data)
        except (ValueError, TypeError) as exc:
            raise input_error(name, "data", expected="a rectangular array", got=str(exc)) from exc
        want = numpy_dtype(datatype)
        kind = arr.dtype.kind
        ok = kind in "biuf" and (kind != "f" or want.kind == "f") and (want.kind != "b" or kind == "b")
        if not ok:
            raise input_error(name, f"data for a {datatype} tensor", expected=f"{datatype} values", got=str(arr.dtype))
        arr = arr.astype(want).reshape(-1)
    if arr.size != count:
        raise input_error(name, f"data size for shape {shape}", expected=f"{count} values", got=f"{arr.size}")
    return arr.reshape(shape)


def _binary_tensor(name: str, datatype: str, shape: list[int], raw: memoryview) -> np.ndarray[Any, Any]:
    count = math.prod(shape)
    if datatype == "BYTES":
        return decode_bytes(raw, count, name).reshape(shape)
    dtype = numpy_dtype(datatype).newbyteorder("<")
    if len(raw) != count * dtype.itemsize:
        raise input_error(
            name,
            f"binary data size for {datatype} shape {shape}",
            expected=f"{count * dtype.itemsize} bytes",
            got=f"{len(raw)} bytes",
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def split_request(body: bytes, header_length: int | None) -> tuple[dict[str, Any], list[Any], memoryview]:
    """The JSON header of a request (checked to hold a non-empty ``inputs`` list), its inputs, and the binary
    data that follows the header."""
    if header_length is not None and not 0 < header_length <= len(body):
        raise InvalidInputError(
            f"Inference-Header-Content-Length: expected 1..{len(body)}, got {header_length}",
            field="Inference-Header-Content-Length",
        )
    head = body if header_length is None else body[:header_length]
    try:
        doc = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"body: not valid JSON: {exc}", field="body") from exc
    if not isinstance(doc, dict):
        raise InvalidInputError("body: expected a JSON object with 'inputs'", field="body")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInputError("inputs: expected a non-empty list of tensors", field="inputs", got=inputs)
    binary = memoryview(body)[header_length:] if header_length is not None else memoryview(b"")
    return doc, inputs, binary


def tensor_header(tensor: Any, seen: Mapping[str, Any]) -> tuple[str, str, list[int]]:
    """An input tensor's name, datatype and shape, checked."""
    if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
        raise InvalidInputError("inputs: each tensor needs a 'name'", field="inputs", got=tensor)
    name = tensor["name"]
    if name in seen:
        raise input_error(name, "given twice", expected="each input once", got="a duplicate")
    datatype = tensor.get("datatype")
    if datatype not in OIP_DATATYPES:
        raise input_error(name, "unknown datatype", expected=f"one of {sorted(OIP_DATATYPES)}", got=datatype)
    return name, datatype, _shape(tensor.get("shape"), name)


def request_parameters(doc: dict[str, Any]) -> dict[str, Any]:
    """The request-level ``parameters`` object (``binary_data_output``, ``entity_id``, ``segments``...)."""
    params = doc.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidInputError("parameters: expected an object", field="parameters", got=params)
    return params


def requested_outputs(doc: dict[str, Any], model: ServedModel) -> list[tuple[str, bool]]:
    """The outputs a request asks for, in order, each with whether it goes back as binary."""
    binary_default = bool(request_parameters(doc).get("binary_data_output", False))
    return _requested_outputs(doc.get("outputs"), model, binary_default)


def parse_request(body: bytes, header_length: int | None, model: ServedModel) -> InferRequest:
    """Decode and validate an inference request for ``model``; every problem is a 400 naming the input."""
    doc, inputs, binary = split_request(body, header_length)
    offset = 0
    schema = model.schema
    columns: Columns = {}
    for tensor in inputs:
        name, datatype, shape = tensor_header(tensor, columns)
        params = tensor.get("parameters") or {}
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise input_error(name, "binary_data_size", expected=f"at most {len(binary) - offset} bytes", got=size)
            arr = _binary_tensor(name, datatype, shape, binary[offset : offset + size])
            offset += size
        elif "data" in tensor:
            arr = json_tensor(name, datatype, shape, tensor["data"])
        else:
            raise input_error(name, "no data", expected="'data' or parameters.binary_data_size", got="neither")
        columns[name] = schema.check_tensor(name, datatype, arr)
    if offset != len(binary):
        raise InvalidInputError(f"body: {len(binary) - offset} bytes of binary data belong to no input", field="body")
    for name in schema.names:
        if name not in columns:
            raise input_error(name, "missing", expected=f"inputs {schema.names}", got=sorted(columns))
    rows = check_rows(columns)
    req_params = request_parameters(doc)
    outputs = requested_outputs(doc, model)
    request_id = doc.get("id")
    return InferRequest(columns, rows, outputs, request_id if isinstance(request_id, str) else None, req_params)


def _requested_outputs(spec: Any, model: ServedModel, binary_default: bool) -> list[tuple[str, bool]]:
    if spec is None:
        return [(o.name, binary_default) for o in model.outputs]
    if not isinstance(spec, list) or not spec:
        raise InvalidInputError("outputs: expected a non-empty list", field="outputs", got=spec)
    wanted: list[tuple[str, bool]] = []
    for out in spec:
        name = out.get("name") if isinstance(out, dict) else None
        if name not in model.output_names:
            raise InvalidInputError(
                f"output {name!r}: unknown output: expected one of {sorted(model.output_names)}",
                field="outputs",
                expected=sorted(model.output_names),
                got=name,
            )
        params = out.get("parameters") or {}
        binary = params.get("binary_data", binary_default) if isinstance(params, Mapping) else binary_default
        wanted.append((name, bool(binary)))
    return wanted


def encode_response(
    model: ServedModel, request_id: str, outputs: Outputs, wanted: list[tuple[str, bool]]
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header length when binary outputs follow it."""
    docs: list[dict[str, Any]] = []
    raws: list[bytes] = []
    for name, binary in wanted:
        arr = outputs[name]
        # The array's own dtype decides: a model may return labels of another type than its example did.
        datatype = "BYTES" if arr.dtype.kind in "OUSM" else oip_datatype(str(arr.dtype))
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(arr.shape)}
        if datatype == "BYTES":
            if binary:
                raw = encode_bytes(arr)
                entry["parameters"] = {"binary_data_size": len(raw)}
                raws.append(raw)
            else:
                entry["data"] = [v if isinstance(v, str) else str(v) for v in arr.reshape(-1).tolist()]
        else:
            flat = np.ascontiguousarray(arr, dtype=numpy_dtype(datatype)).reshape(-1)
            if binary:
                raw = flat.astype(flat.dtype.newbyteorder("<"), copy=False).tobytes()
                entry["parameters"] = {"binary_data_size": len(raw)}
                raws.append(raw)
            else:
                entry["data"] = flat
        docs.append(entry)
    head = orjson.dumps(
        {"model_name": model.name, "model_version": str(model.version), "id": request_id, "outputs": docs},
        option=_OPTS,
    )
    if not raws:
        return head, None
    return head + b"".join(raws), len(head)
