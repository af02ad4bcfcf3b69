"""Parquet sources on object storage (``s3://bucket/prefix/*.parquet``), read by DuckDB through fsspec.

DuckDB's own S3 support (the httpfs extension) is downloaded at run time, which an offline or locked-down host
cannot do; an fsspec filesystem registered with the connection needs nothing beyond the ``s3`` extra (imported
lazily, as the artifact store does). The endpoint comes from :meth:`~mlpilot.config.Settings.storage_options`
(``MLPILOT_S3_ENDPOINT_URL``); credentials and region from the usual AWS environment variables, ``~/.aws`` files
or instance role, read by botocore and never by mlpilot.
"""

from __future__ import annotations

from typing import Any

from mlpilot.errors import InvalidInputError, MissingDependencyError

__all__ = ["REMOTE_SCHEMES", "expand_remote", "is_remote", "remote_filesystem"]

REMOTE_SCHEMES = ("s3",)
_GLOB_CHARS = ("*", "?", "[")


def is_remote(path: str) -> bool:
    """Whether ``path`` is a URL with a scheme (``s3://…``) rather than a local path."""
    return "://" in path


def remote_filesystem(url: str) -> Any:
    """The fsspec filesystem for ``url``'s scheme, configured from mlpilot settings (cached by fsspec)."""
    from mlpilot.config import load_settings

    scheme = url.split("://", 1)[0].lower()
    if scheme not in REMOTE_SCHEMES:
        raise InvalidInputError(
            f"source.path: unsupported scheme {scheme!r} in {url}; use a local path or s3://", field="source.path"
        )
    try:
        import s3fs
    except ImportError as exc:
        raise MissingDependencyError("s3fs", "s3") from exc
    # No listings cache: a long-lived process must see the files pushed since its last run.
    options = {"use_listings_cache": False, **load_settings().storage_options(url)}
    return s3fs.S3FileSystem(**options)


def expand_remote(pattern: str) -> list[str]:
    """The object URLs ``pattern`` names now, sorted: a glob, one object, or every ``*.parquet`` under a prefix.

    Raises :class:`InvalidInputError` naming ``pattern`` when nothing matches or the store refuses the listing.
    """
    fs = remote_filesystem(pattern)
    scheme, path = pattern.split("://", 1)
    try:
        if any(c in path for c in _GLOB_CHARS):
            found = fs.glob(path)
        elif fs.isfile(path):
            found = [path]
        elif fs.isdir(path):
            found = fs.glob(path.rstrip("/") + "/**/*.parquet")
        else:
            raise InvalidInputError(f"source.path: no such object {pattern}", field="source.path")
    except InvalidInputError:
        raise
    except Exception as exc:  # botocore and s3fs raise many types; their messages hold no credentials
        raise InvalidInputError(
            f"source.path: cannot list {pattern}: {type(exc).__name__}: {exc}", field="source.path"
        ) from exc
    return [f"{scheme}://{name}" for name in sorted(str(f) for f in found)]
