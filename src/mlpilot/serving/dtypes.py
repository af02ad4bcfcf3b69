"""Datatype names: the registry's NumPy-style names and the Open Inference Protocol's tensor datatypes.

The registry records ``float64``, ``int32``, ``string``, ``category``... ; the Open Inference Protocol (v2)
speaks ``FP64``, ``INT32``, ``BYTES``... Strings, categories and Python objects all travel as ``BYTES``::

    >>> oip_datatype("float32"), oip_datatype("string")
    ('FP32', 'BYTES')
    >>> numpy_dtype("INT64")
    dtype('int64')
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

__all__ = ["OIP_DATATYPES", "is_text", "numpy_dtype", "oip_datatype"]

# OIP datatype -> NumPy dtype. BYTES elements are Python str/bytes in an object array.
_OIP_TO_NUMPY: Final[dict[str, np.dtype[Any]]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
_NUMPY_TO_OIP: Final[dict[str, str]] = {str(dt): name for name, dt in _OIP_TO_NUMPY.items() if name != "BYTES"}
_TEXT_NAMES: Final[frozenset[str]] = frozenset({"string", "str", "category", "object", "bytes"})

OIP_DATATYPES: Final[frozenset[str]] = frozenset(_OIP_TO_NUMPY)


def is_text(dtype_name: str) -> bool:
    """Whether a registry dtype name holds text or arbitrary objects (sent as ``BYTES``)."""
    return dtype_name in _TEXT_NAMES or dtype_name.startswith(("string", "<U", "|S"))


def oip_datatype(dtype_name: str) -> str:
    """The OIP datatype for a registry dtype name; anything non-numeric is ``BYTES``."""
    if is_text(dtype_name):
        return "BYTES"
    try:
        return _NUMPY_TO_OIP.get(str(np.dtype(dtype_name)), "BYTES")
    except TypeError:
        return "BYTES"  # pandas extension dtypes ("Int64", "boolean") have no fixed-width OIP type


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    """The NumPy dtype of an OIP datatype; raises ``KeyError`` for an unknown one."""
    return _OIP_TO_NUMPY[datatype]
