"""Validation of the logical names users give artifacts (``plots/roc.png``)."""

from __future__ import annotations

import posixpath

from mlpilot.errors import UnsafePathError

__all__ = ["safe_name"]


def safe_name(name: str) -> str:
    """Return ``name`` normalised to a relative POSIX path, or raise :class:`UnsafePathError`.

    Refused: empty names, NUL bytes, absolute paths (``/x``, ``C:\\x``, ``\\\\host``), and any ``..`` segment.

    >>> safe_name("plots//roc.png")
    'plots/roc.png'
    """
    if not isinstance(name, str) or not name.strip():
        raise UnsafePathError("artifact name must be a non-empty string", field="name")
    if "\x00" in name:
        raise UnsafePathError("artifact name contains a NUL byte", field="name")
    unified = name.replace("\\", "/")
    if unified.startswith("/") or (len(unified) > 1 and unified[1] == ":"):
        raise UnsafePathError(f"artifact name must be relative, got {name!r}", field="name")
    parts = [p for p in unified.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UnsafePathError(f"artifact name must not contain '..', got {name!r}", field="name")
    if not parts:
        raise UnsafePathError(f"artifact name has no file part: {name!r}", field="name")
    return posixpath.join(*parts)
