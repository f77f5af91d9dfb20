"""`serve` and `token`: the HTTP API and its tokens."""
from __future__ import annotations

import sys
from pathlib import Path

from shelf.serving.cli.common import EXIT_NOTHING_DONE, EXIT_OK, _positive


def cmd_serve(args) -> int:
    import os

    import uvicorn

    from shelf.serving import api, tokens
    from shelf.storage.store import open_store
    engine = open_store(args.db)
    host, note = api.bind_address(args.host, tokens.any_active(engine))
    engine.dispose()
    if args.db:
        os.environ["SHELF_DATABASE_URL"] = args.db  # the workers open the same store
    os.environ[api.LOCAL_ENV] = "1" if note else ""
    if note:
        print(f"note: {note}", file=sys.stderr)
    print(f"Shelf API on http://{host}:{args.port} (docs at /docs), {args.workers} worker(s)", file=sys.stderr)
    uvicorn.run("shelf.serving.api:app_from_env", factory=True, host=host, port=args.port, workers=args.workers,
                log_level="info")
    return EXIT_OK


def cmd_token(args) -> int:
    from shelf import access
    from shelf.serving import tokens
    from shelf.storage.store import open_store
    access.require(access.LOCAL, "manage_tokens")  # the operator at the shell; one rule table for every door
    engine = open_store(args.db)
    if args.action == "create" and args.secret_file:
        return _register_token(engine, args)
    if args.action == "create":
        try:
            secret = tokens.create_token(engine, args.name, args.role, store=args.store)
        except tokens.TokenError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_NOTHING_DONE
        print(secret)
        print(f"token {args.name!r} ({args.role}) created; it is shown only this once: keep it now. Send it as "
              "'Authorization: Bearer <token>'.", file=sys.stderr)
        return EXIT_OK
    if args.action == "revoke":
        if not tokens.revoke_token(engine, args.name):
            print(f"error: no active token named {args.name!r}", file=sys.stderr)
            return EXIT_NOTHING_DONE
        print(f"revoked {args.name}")
        return EXIT_OK
    found = tokens.list_tokens(engine)
    if not found:
        print("no API tokens (the API serves 127.0.0.1 only, without tokens)")
    for t in found:
        state = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "active"
        print(f"{t.name}\t{t.role}\tcreated {t.created_at:%Y-%m-%d %H:%M}\t{state}")
    return EXIT_OK


def _register_token(engine, args) -> int:
    """`token create NAME --secret-file FILE`: a token the operator made, kept in a file (a container secret), is
    registered; again with the same file, nothing changes. The secret is never printed."""
    from shelf.files import read_bounded
    from shelf.serving import tokens
    try:
        secret = read_bounded(args.secret_file, 4096).decode("utf-8").strip()
        tokens.create_token(engine, args.name, args.role, store=args.store, secret=secret)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        print(f"error: {args.secret_file}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return EXIT_NOTHING_DONE
    print(f"token {args.name!r} ({args.role}) from {args.secret_file} is registered", file=sys.stderr)
    return EXIT_OK


def add_serve(sub) -> None:
    p = sub.add_parser("serve", help="the HTTP API (FastAPI on uvicorn); OpenAPI docs at /docs")
    p.add_argument("--host", default="127.0.0.1",
                   help="where to listen (default 127.0.0.1); without any API token always 127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=_positive, default=1, help="worker processes, one model each (default 1)")
    p.add_argument("--db", default=None)
    p.set_defaults(run=cmd_serve)


def add_token(sub) -> None:
    p = sub.add_parser("token", help="API tokens: create (shown once), list, revoke")
    tsub = p.add_subparsers(dest="action", required=True)
    create = tsub.add_parser("create")
    create.add_argument("name", help="who or what uses the token")
    create.add_argument("--role", choices=["viewer", "reviewer", "admin"], required=True)
    create.add_argument("--secret-file", type=Path, default=None,
                        help="register the token kept in this file (a container secret) instead of making one; "
                             "running again with the same file changes nothing")
    create.add_argument("--store", default=None, help="a store's app: it works on that store's tasks only")
    revoke = tsub.add_parser("revoke")
    revoke.add_argument("name")
    for parser_ in (create, revoke, tsub.add_parser("list")):
        parser_.add_argument("--db", default=None)
    p.set_defaults(run=cmd_token)


PARSERS = {"serve": add_serve, "token": add_token}
