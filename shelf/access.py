"""Who may do what: identities, the three roles and the actions each role allows.

One table (`ACTIONS`) is the source of truth for the dashboard, the CLI and the HTTP API. Pages hide what a role
may not do, but every state-changing function reached from a page or an endpoint calls `require` first: a hidden
button is not a control.

Roles come from a small TOML file (`SHELF_ROLES_FILE`):

    default = "viewer"                 # role of any other signed-in user
    [roles]
    "ana@example.com" = "admin"        # one address
    "@stores.example.com" = "reviewer" # a whole domain

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
}


class Forbidden(PermissionError):
    """Raised when an identity tries an action its role does not allow."""


@dataclass(frozen=True)
class Identity:
    name: str                 # what the audit log and the review history show
    role: str
    email: str | None = None
    via: str = "local"        # local | oidc | header | token

    def may(self, action: str) -> bool:
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
    return role in ROLES and ROLES.index(role) >= ROLES.index(ACTIONS[action])


def require(identity: Identity, action: str) -> None:
    if not identity.may(action):
        raise Forbidden(f"{identity.name} ({identity.role}) may not {action.replace('_', ' ')}; "
                        f"that needs the {ACTIONS[action]} role")


@dataclass(frozen=True)
class RolesConfig:
    by_address: dict[str, str] = field(default_factory=dict)   # lower-case e-mail or "@domain" -> role
    default: str = "viewer"

    def role_for(self, email: str | None) -> str:
        if not email:
            return self.default
        email = email.strip().lower()
        if email in self.by_address:
            return self.by_address[email]
        domain = "@" + email.rpartition("@")[2]
        return self.by_address.get(domain, self.default)


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
    for address, role in roles.items():
        if role not in ROLES:
            raise RolesFileError(f"{path.name}: role {role!r} for {address} is not one of {', '.join(ROLES)}")
    return RolesConfig({address.strip().lower(): role for address, role in roles.items()}, default)
