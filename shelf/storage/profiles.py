"""Region profiles: `auto`'s settings tuned from labelled photos, stored by name, versioned, chosen per store.

Tuning the same name again adds a version; `auto:NAME` uses the newest. Versions are never edited or deleted:
removing a profile marks its versions removed (runs that used one still say which), and a store that used it
goes back to the default profile. Every change is audited.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from shelf.access import LOCAL, Identity, require
from shelf.ingest.auto import AutoParams
from shelf.ingest.regions import check_profile_name
from shelf.storage import audit
from shelf.storage.schema import region_profiles, store_profiles
from shelf.storage.store import utc_now, write_transaction
from shelf.text import clean_text

DEFAULT = "default"  # the built-in profile's name: AutoParams() as shipped


class ProfileError(ValueError):
    """A profile that does not exist, or a name that cannot be one; the message says which."""


@dataclass(frozen=True)
class RegionProfile:
    name: str
    version: int
    params: AutoParams = field(default_factory=AutoParams)
    figures: dict = field(default_factory=dict, compare=False)
    created_by: str = ""
    created_at: dt.datetime | None = None

    @property
    def label(self) -> str:
        """How runs and pages name it: 'default', or 'name v3'."""
        return DEFAULT if self.name == DEFAULT else f"{self.name} v{self.version}"

    def provenance(self) -> dict:
        return {"name": self.name, "version": self.version, "params": _jsonable(self.params.changes())}


DEFAULT_PROFILE = RegionProfile(DEFAULT, 0)


def _jsonable(changes: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in changes.items()}


def _profile(row) -> RegionProfile:
    return RegionProfile(row.name, row.version, AutoParams().replaced(**json.loads(row.params)),
                         json.loads(row.figures), row.created_by, row.created_at)


def save_profile(engine: Engine, name: str, params: AutoParams, figures: dict, *, by: Identity = LOCAL
                 ) -> RegionProfile:
    """Store `params` as the newest version of profile `name` (version 1 if it is new)."""
    require(by, "manage_profiles")
    name = check_name(name)
    with write_transaction(engine) as conn:
        newest = conn.execute(sa.select(sa.func.max(region_profiles.c.version))
                              .where(region_profiles.c.name == name)).scalar() or 0
        row = {"name": name, "version": newest + 1, "params": json.dumps(_jsonable(params.changes()), sort_keys=True),
               "figures": json.dumps(figures, sort_keys=True, default=float), "created_by": by.name[:200],
               "created_at": utc_now()}
        conn.execute(region_profiles.insert().values(**row))
        audit.record(conn, by, "manage_profiles", f"region profile {name}", None,
                     {"version": newest + 1, "params": json.loads(row["params"])})
    return RegionProfile(name, newest + 1, params, figures, row["created_by"], row["created_at"])


def check_name(name: str) -> str:
    """`name` if a tuned profile may have it; ProfileError saying why not."""
    if name == DEFAULT:
        raise ProfileError(f"'{DEFAULT}' is the built-in profile; give a tuned profile another name")
    try:
        return check_profile_name(name)
    except ValueError as exc:
        raise ProfileError(str(exc)) from None


def _newest(conn: Connection, name: str) -> RegionProfile | None:
    row = conn.execute(sa.select(region_profiles).where(region_profiles.c.name == name,
                                                        ~region_profiles.c.removed)
                       .order_by(region_profiles.c.version.desc()).limit(1)).first()
    return _profile(row) if row else None


def get_profile(engine: Engine, name: str) -> RegionProfile:
    """The newest version of a profile, or the default profile for 'default'; ProfileError if there is none."""
    if name == DEFAULT:
        return DEFAULT_PROFILE
    with engine.connect() as conn:
        found = _newest(conn, name)
    if found is None:
        raise ProfileError(f"no region profile named {name!r}; `python -m shelf regions profile list` shows them")
    return found


def list_profiles(engine: Engine) -> list[RegionProfile]:
    """The newest version of every profile not removed, by name."""
    newest = sa.select(region_profiles.c.name, sa.func.max(region_profiles.c.version).label("version")) \
        .where(~region_profiles.c.removed).group_by(region_profiles.c.name).subquery()
    with engine.connect() as conn:
        rows = conn.execute(sa.select(region_profiles).join(
            newest, sa.and_(region_profiles.c.name == newest.c.name, region_profiles.c.version == newest.c.version))
            .order_by(region_profiles.c.name)).all()
    return [_profile(r) for r in rows]


def remove_profile(engine: Engine, name: str, *, by: Identity = LOCAL) -> int:
    """Mark every version of `name` removed and send its stores back to the default; the number of versions."""
    require(by, "manage_profiles")
    with write_transaction(engine) as conn:
        removed = conn.execute(region_profiles.update().where(region_profiles.c.name == name,
                                                              ~region_profiles.c.removed)
                               .values(removed=True)).rowcount
        if not removed:
            raise ProfileError(f"no region profile named {name!r}")
        stores = conn.execute(sa.select(store_profiles.c.store).where(store_profiles.c.profile == name)).scalars()
        stores = list(stores)
        conn.execute(store_profiles.delete().where(store_profiles.c.profile == name))
        audit.record(conn, by, "manage_profiles", f"region profile {name}", {"versions": removed, "stores": stores},
                     None)
    return removed


def store_profile_names(engine: Engine) -> dict[str, str]:
    """Store → the name of the profile `auto` uses there (stores without one use the default)."""
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(store_profiles.c.store, store_profiles.c.profile)).all())


def set_store_profile(engine: Engine, store: str, name: str, *, by: Identity = LOCAL) -> None:
    """Make `auto` use profile `name` for `store`'s photos ('default': the built-in one)."""
    require(by, "manage_profiles")
    store = clean_text(store)
    with write_transaction(engine) as conn:
        if name != DEFAULT and _newest(conn, name) is None:
            raise ProfileError(f"no region profile named {name!r}")
        before = conn.execute(sa.select(store_profiles.c.profile).where(store_profiles.c.store == store)
                              ).scalar_one_or_none()
        conn.execute(store_profiles.delete().where(store_profiles.c.store == store))
        if name != DEFAULT:
            conn.execute(store_profiles.insert().values(store=store, profile=name))
        audit.record(conn, by, "manage_profiles", f"region profile of store {store or '(none)'}",
                     before or DEFAULT, name)


def profile_for(engine: Engine, name: str, store: str) -> RegionProfile:
    """The profile auto uses for one photo of `store` in mode auto[:name]."""
    named, by_store = profiles_for(engine, name)
    return named or by_store.get(clean_text(store), DEFAULT_PROFILE)


def profiles_for(engine: Engine, name: str = "") -> tuple[RegionProfile | None, dict[str, RegionProfile]]:
    """What a run in mode `auto[:name]` uses, resolved once before it starts: (the named profile, or None to
    choose per store; store → profile for the stores that have one). ProfileError for an unknown name."""
    if name:
        return get_profile(engine, name), {}
    with engine.connect() as conn:
        chosen = dict(conn.execute(sa.select(store_profiles.c.store, store_profiles.c.profile)).all())
        found = {n: _newest(conn, n) for n in set(chosen.values())}
    return None, {store: found[n] for store, n in chosen.items() if found[n] is not None}
