"""Who may do what: identities, the three roles and the actions each role allows.

One table (`ACTIONS`) is the source of truth for the dashboard, the CLI and the HTTP API. Pages hide what a role
may not do, but every state-changing function reached from a page or an endpoint calls `require` first: a hidden
button is not a control.

Roles come from a small TOML file (`SHELF_ROLES_FILE`):

    default = "viewer"                 # role of any other signed-in user
    [roles]
    "ana@example.com" = "admin"        # one address
    "@stores.example.com" = "reviewer" # a whole domain
    "s014@stores.example.com" = { role = "viewer", store = "S014" }   # store staff: S014's tasks only

An identity with a `store` is store staff: it may do the STORE_ACTIONS (acknowledge, complete tasks) for that store
from the role named there, and no store-bound action for any other store.

Without sign-in configured Shelf is a single-user tool on a laptop and the local user may do everything (`LOCAL`).
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROLES = ("viewer", "reviewer", "admin")

# action -> the least role allowed to do it
ACTIONS = {
    "view": "viewer",
    "export": "viewer",
    "recognize": "reviewer",     # upload / batch photos into the store
    "correct": "reviewer",       # save corrections on Review
    "edit_photo": "reviewer",    # store / aisle / date of a stored photo, recognise again
    "delete_photo": "admin",
    "manage_weights": "admin",   # import weights or a detector
    "switch_backend": "admin",
    "edit_categories": "admin",
    "edit_catalog": "admin",     # SKUs, reference photos, catalog threshold
    "edit_planogram": "admin",
    "manage_profiles": "admin",  # region profiles: tune, save, remove, choose one for a store
    "manage_tokens": "admin",
    "view_audit": "admin",
    "work_task": "reviewer",     # acknowledge a store task, mark it done (store staff: see STORE_ACTIONS)
    "manage_tasks": "admin",     # task rules, webhooks, the outbox
}

# action -> the least role store staff (an identity with a store) need to do it for their own store
STORE_ACTIONS = {"work_task": "viewer"}


class Forbidden(PermissionError):
    """Raised when an identity tries an action its role does not allow."""


@dataclass(frozen=True)
class Identity:
    name: str                 # what the audit log and the review history show
    role: str
    email: str | None = None
    via: str = "local"        # local | oidc | header | token
    store: str | None = None  # store staff: the one store whose tasks they work on

    def may(self, action: str, store: str | None = None) -> bool:
        """Whether this identity may do `action` (for something of `store`, where the action concerns a store)."""
        if self.store is not None and store is not None:
            if store != self.store:
                return False
            if action in STORE_ACTIONS:
                return allowed(self.role, action) or _at_least(self.role, STORE_ACTIONS[action])
        return allowed(self.role, action)


LOCAL = Identity(name="local user", role="admin", via="local")


def acting(who: Identity | str) -> Identity:
    """The identity behind `who`: an Identity as it is, a plain name (the CLI, scripts, and the dashboard without
    sign-in, where the person at the keyboard types it) as the local user of that name."""
    if isinstance(who, Identity):
        return who
    name = " ".join(str(who).split())
    if not name:
        raise ValueError("a reviewer name is required")
    return Identity(name=name, role=LOCAL.role, via=LOCAL.via)


def allowed(role: str, action: str) -> bool:
    if action not in ACTIONS:
        raise KeyError(f"unknown action {action!r}")
    return _at_least(role, ACTIONS[action])


def _at_least(role: str, least: str) -> bool:
    return role in ROLES and ROLES.index(role) >= ROLES.index(least)


def require(identity: Identity, action: str, store: str | None = None) -> None:
    """Raise Forbidden unless `identity` may do `action` (for something of `store`, where it concerns one)."""
    if identity.may(action, store):
        return
    if identity.store is not None and store is not None and store != identity.store:
        raise Forbidden(f"{identity.name} works for store {identity.store} and may not {action.replace('_', ' ')} "
                        f"for store {store}")
    least = STORE_ACTIONS[action] if identity.store is not None and action in STORE_ACTIONS else ACTIONS[action]
    raise Forbidden(f"{identity.name} ({identity.role}) may not {action.replace('_', ' ')}; "
                    f"that needs the {least} role" + (" (store staff: for their own store)" if
                                                      least != ACTIONS[action] else ""))


@dataclass(frozen=True)
class RolesConfig:
    by_address: dict[str, str] = field(default_factory=dict)   # lower-case e-mail or "@domain" -> role
    default: str = "viewer"
    stores: dict[str, str] = field(default_factory=dict)       # lower-case e-mail or "@domain" -> store

    def _entry(self, email: str | None) -> str | None:
        """The key that applies to `email`: its address, else its domain, else None (the default)."""
        if not email:
            return None
        email = email.strip().lower()
        if email in self.by_address:
            return email
        domain = "@" + email.rpartition("@")[2]
        return domain if domain in self.by_address else None

    def role_for(self, email: str | None) -> str:
        entry = self._entry(email)
        return self.default if entry is None else self.by_address[entry]

    def store_for(self, email: str | None) -> str | None:
        """The store a signed-in user works for (store staff), or None (head office)."""
        entry = self._entry(email)
        return None if entry is None else self.stores.get(entry)


class RolesFileError(ValueError):
    pass


def load_roles(path: Path | str | None = None) -> RolesConfig:
    """The roles file named by `path` or `SHELF_ROLES_FILE`; without one every signed-in user is a viewer."""
    path = path or os.environ.get("SHELF_ROLES_FILE")
    if not path:
        return RolesConfig()
    path = Path(path).expanduser()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RolesFileError(f"{path.name}: cannot read the roles file ({exc})") from None
    default = data.get("default", "viewer")
    roles = data.get("roles", {})
    if default not in ROLES:
        raise RolesFileError(f"{path.name}: default role {default!r} is not one of {', '.join(ROLES)}")
    if not isinstance(roles, dict):
        raise RolesFileError(f"{path.name}: [roles] must be a table of address = role")
    by_address, stores = {}, {}
    for address, value in roles.items():
        key = address.strip().lower()
        role, store = (value.get("role"), value.get("store")) if isinstance(value, dict) else (value, None)
        if isinstance(value, dict) and set(value) - {"role", "store"}:
            raise RolesFileError(f"{path.name}: {address} has {', '.join(sorted(set(value) - {'role', 'store'}))}; "
                                 "an entry is a role, or { role = \"...\", store = \"...\" }")
        if role not in ROLES:
            raise RolesFileError(f"{path.name}: role {role!r} for {address} is not one of {', '.join(ROLES)}")
        if store is not None:
            if not isinstance(store, str) or not store.strip():
                raise RolesFileError(f"{path.name}: store for {address} must be a store's name, not {store!r}")
            stores[key] = " ".join(store.split())
        by_address[key] = role
    return RolesConfig(by_address, default, stores)
