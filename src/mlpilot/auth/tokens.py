"""API tokens: random secrets shown once, stored only as SHA-256 hashes, each with a role.

Roles are ordered: ``viewer`` reads, ``editor`` also writes, ``admin`` also manages tokens.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from mlpilot.errors import AlreadyExistsError, AuthenticationError, InvalidInputError, NotFoundError
from mlpilot.store import Store, now_ms
from mlpilot.store.audit import record_event
from mlpilot.store.schema import ApiToken

__all__ = ["ROLES", "TokenInfo", "TokenService", "role_allows"]

ROLES = ("viewer", "editor", "admin")
_TOKEN_PREFIX = "mlp_"  # noqa: S105 - a public marker, not a secret
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")


def role_allows(role: str, needed: str) -> bool:
    """Whether ``role`` includes the rights of ``needed``."""
    return ROLES.index(role) >= ROLES.index(needed)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    role: str
    prefix: str
    created_at: int
    last_used_at: int | None
    revoked_at: int | None

    @classmethod
    def of(cls, row: ApiToken) -> TokenInfo:
        return cls(row.id, row.name, row.role, row.prefix, row.created_at, row.last_used_at, row.revoked_at)


class TokenService:
    """Create, list, revoke and verify tokens.

    >>> tokens = TokenService(Store("sqlite:///:memory:"))
    >>> secret, info = tokens.create("ci-bot", role="editor")
    >>> tokens.verify(secret).role
    'editor'
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def create(self, name: str, *, role: str = "viewer", actor: str = "local") -> tuple[str, TokenInfo]:
        """A new token; the returned secret is never stored and cannot be shown again."""
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidInputError(f"token name must be 1-128 letters, digits or '_.@-', got {name!r}", field="name")
        if role not in ROLES:
            raise InvalidInputError(f"role must be one of {', '.join(ROLES)}, got {role!r}", field="role")
        secret = _TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = ApiToken(name=name, token_hash=_hash(secret), prefix=secret[:8], role=role, created_at=now_ms())
        try:
            with self.store.write() as session:
                session.add(row)
                session.flush()
                record_event(
                    session,
                    kind="token.created",
                    subject=f"tokens/{name}",
                    actor=actor,
                    payload={"role": role},
                )
                info = TokenInfo.of(row)
        except SAIntegrityError as exc:
            raise AlreadyExistsError(f"a token named {name!r} exists already", field="name") from exc
        return secret, info

    def list(self) -> list[TokenInfo]:
        with self.store.read() as session:
            return [TokenInfo.of(r) for r in session.scalars(select(ApiToken).order_by(ApiToken.id))]

    def revoke(self, name: str, *, actor: str = "local") -> TokenInfo:
        with self.store.write() as session:
            row = session.scalars(select(ApiToken).where(ApiToken.name == name)).one_or_none()
            if row is None:
                raise NotFoundError(f"no token named {name!r}", field="name")
            if row.revoked_at is None:
                row.revoked_at = now_ms()
                record_event(session, kind="token.revoked", subject=f"tokens/{name}", actor=actor)
            return TokenInfo.of(row)

    def verify(self, secret: str) -> TokenInfo:
        """The token's info, or :class:`AuthenticationError` for an unknown or revoked secret."""
        if not secret.startswith(_TOKEN_PREFIX):
            raise AuthenticationError("malformed API token")
        digest = _hash(secret)
        with self.store.read() as session:
            row = session.scalars(select(ApiToken).where(ApiToken.token_hash == digest)).one_or_none()
            if row is None or not secrets.compare_digest(row.token_hash, digest):
                raise AuthenticationError("unknown API token")
            if row.revoked_at is not None:
                raise AuthenticationError(f"API token {row.name!r} was revoked")
            return TokenInfo.of(row)
