"""The control plane's REST API (FastAPI). Thin: parse, call a service, render."""

from __future__ import annotations

from mlpilot.api.app import create_app
from mlpilot.api.deps import Services

__all__ = ["Services", "create_app"]
