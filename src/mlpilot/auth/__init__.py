"""API tokens and roles for the control plane."""

from __future__ import annotations

from mlpilot.auth.tokens import ROLES, TokenInfo, TokenService, role_allows

__all__ = ["ROLES", "TokenInfo", "TokenService", "role_allows"]
