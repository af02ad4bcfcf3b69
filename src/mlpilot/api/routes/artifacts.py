"""Blob upload and download by SHA-256; the server re-hashes every upload before storing it."""

from __future__ import annotations

import hashlib
import os
import tempfile
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from mlpilot.api.deps import Services, get_services, require_role
from mlpilot.artifacts.base import check_digest
from mlpilot.errors import InvalidInputError

router = APIRouter(prefix="/api/v1/artifacts", tags=["artifacts"])


@router.put("/{sha256}", status_code=201)
async def upload(
    sha256: str,
    request: Request,
    services: Services = Depends(get_services),
    _actor: str = Depends(require_role("editor")),
) -> dict[str, Any]:
    check_digest(sha256)
    h = hashlib.sha256()
    size = 0
    fd, tmp = tempfile.mkstemp(prefix="mlpilot-upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                h.update(chunk)
                size += len(chunk)
                out.write(chunk)
        if h.hexdigest() != sha256:
            raise InvalidInputError(f"uploaded bytes hash to {h.hexdigest()}, not to {sha256}", field="sha256")
        services.artifacts.put_file(tmp)
    finally:
        os.unlink(tmp)
    return {"sha256": sha256, "size": size}


@router.get("/{sha256}")
def download(
    sha256: str, services: Services = Depends(get_services), _actor: str = Depends(require_role("viewer"))
) -> FileResponse:
    check_digest(sha256)
    fd, tmp = tempfile.mkstemp(prefix="mlpilot-download-")
    os.close(fd)
    try:
        services.artifacts.get_file(sha256, tmp)  # verifies the hash before a byte is sent
    except BaseException:
        os.unlink(tmp)
        raise
    return FileResponse(tmp, media_type="application/octet-stream", background=BackgroundTask(os.unlink, tmp))


@router.head("/{sha256}")
def exists(
    sha256: str, services: Services = Depends(get_services), _actor: str = Depends(require_role("viewer"))
) -> dict[str, Any]:
    from mlpilot.errors import NotFoundError

    check_digest(sha256)
    if not services.artifacts.exists(sha256):
        raise NotFoundError(f"artifact {sha256} is not stored", field="sha256")
    return {}
