"""API tokens: created by an admin (dashboard or `python -m shelf token`), shown once, kept only as a sha256.

A token maps to an `Identity(name=<token name>, role=<its role>, via="token", store=<its store>)`, so the HTTP API
enforces the same roles (shelf.access) as the dashboard; a token made for a store (a store's app) works on that
store's tasks only. A revoked token stays listed (when, by name) and never works again.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from shelf.access import LOCAL, ROLES, Identity, require
from shelf.storage import audit
from shelf.storage.schema import api_tokens
from shelf.storage.store import utc_now, write_transaction
from shelf.text import clean_text

PREFIX = "shelf_"  # makes a leaked token recognisable to secret scanners and people
MIN_SECRET_CHARS = 32  # after the prefix, for a secret the operator brings (token_urlsafe(32) gives 43)


class TokenError(ValueError):
    """A token that cannot be created or revoked; the message says why."""


@dataclass(frozen=True)
class TokenInfo:
    name: str
    role: str
    created_at: object
    revoked_at: object | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_token(engine: Engine, name: str, role: str, *, store: str | None = None, by: Identity = LOCAL,
                 secret: str | None = None) -> str:
    """A new token for `name` with `role` (acting for `store` only, if given); returns the secret, which is not
    stored and cannot be shown again. `secret`: one the operator made (a container secret file), registered instead
    of a new one; registering the same secret under the same name and role again changes nothing."""
    require(by, "manage_tokens")
    name = clean_text(name)
    if not name:
        raise TokenError("a token needs a name (who or what uses it)")
    if role not in ROLES:
        raise TokenError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if secret is not None and not (secret.startswith(PREFIX) and len(secret) >= len(PREFIX) + MIN_SECRET_CHARS):
        raise TokenError(f"a token is '{PREFIX}' and at least {MIN_SECRET_CHARS} random characters; make one with "
                         f"python3 -c 'import secrets; print(\"{PREFIX}\" + secrets.token_urlsafe(32))'")
    store = clean_text(store) or None if store is not None else None
    secret = secret or PREFIX + secrets.token_urlsafe(32)
    with write_transaction(engine) as conn:
        active = conn.execute(sa.select(api_tokens.c.role, api_tokens.c.sha256).where(
            api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None))).first()
        if active is not None and (active.role, active.sha256) == (role, digest(secret)):
            return secret
        if active is not None:
            raise TokenError(f"an active token named {name!r} exists; revoke it first or choose another name")
        conn.execute(api_tokens.insert().values(name=name, role=role, store=store, sha256=digest(secret),
                                                created_at=utc_now()))
        audit.record(conn, by, "manage_tokens", f"token {name}", None, {"role": role, "store": store})
    return secret


def revoke_token(engine: Engine, name: str, *, by: Identity = LOCAL) -> int:
    """Revoke the active token named `name`; returns how many were revoked (0: none by that name)."""
    require(by, "manage_tokens")
    with write_transaction(engine) as conn:
        revoked = conn.execute(api_tokens.update().where(api_tokens.c.name == clean_text(name),
                                                         api_tokens.c.revoked_at.is_(None))
                               .values(revoked_at=utc_now())).rowcount
        if revoked:
            audit.record(conn, by, "manage_tokens", f"token {clean_text(name)}", {"active": True}, {"active": False})
    return revoked


def list_tokens(engine: Engine) -> list[TokenInfo]:
    query = sa.select(api_tokens.c.name, api_tokens.c.role, api_tokens.c.created_at, api_tokens.c.revoked_at) \
        .order_by(api_tokens.c.revoked_at.is_not(None), api_tokens.c.name, api_tokens.c.id)
    with engine.connect() as conn:
        return [TokenInfo(*row) for row in conn.execute(query)]


def any_active(engine: Engine) -> bool:
    with engine.connect() as conn:
        return conn.execute(sa.select(api_tokens.c.id).where(api_tokens.c.revoked_at.is_(None)).limit(1)).first() \
            is not None


def identity_for(engine: Engine, secret: str) -> Identity | None:
    """The identity an active token stands for, or None for an unknown or revoked one."""
    if not secret.startswith(PREFIX):
        return None
    with engine.connect() as conn:
        row = conn.execute(sa.select(api_tokens.c.name, api_tokens.c.role, api_tokens.c.store).where(
            api_tokens.c.sha256 == digest(secret), api_tokens.c.revoked_at.is_(None))).first()
    return None if row is None else Identity(name=row.name, role=row.role, via="token", store=row.store)
