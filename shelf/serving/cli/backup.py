"""`backup` and `restore`: the whole Shelf (database and data dir) to one file, and back (shelf.storage.backup)."""
from __future__ import annotations

import sys
from pathlib import Path

from shelf.files import MB
from shelf.serving.cli.common import EXIT_NOTHING_DONE, EXIT_OK


def cmd_backup(args) -> int:
    from shelf.storage.backup import BackupError, create_backup
    try:
        summary = create_backup(args.out, args.db)
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NOTHING_DONE
    print(f"backup written to {summary.path}\n  database  {summary.database}, schema version {summary.schema_version}\n"
          f"  files     {summary.files} ({summary.n_bytes / MB:.1f} MB) from the data dir")
    return EXIT_OK


def cmd_restore(args) -> int:
    from shelf.storage.backup import BackupError, restore_backup
    try:
        summary, version = restore_backup(args.backup, args.db, replace=args.replace)
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NOTHING_DONE
    upgraded = f", migrated to {version}" if version != summary.schema_version else ""
    print(f"restored {summary.path}\n  database  {summary.database}, schema version {summary.schema_version}{upgraded}"
          f"\n  files     {summary.files} ({summary.n_bytes / MB:.1f} MB) into the data dir")
    return EXIT_OK


def add_backup(sub) -> None:
    p = sub.add_parser("backup", help="the database (a consistent copy) and the data dir's files, to one tar file")
    p.add_argument("out", type=Path, nargs="?", default=Path("."),
                   help="the backup file (.tar, or .tar.gz to compress), or a folder for shelf-backup-DATE.tar "
                        "(default: the current folder)")
    p.add_argument("--db", default=None, help="SQLAlchemy URL (default: SHELF_DATABASE_URL or the data dir)")
    p.set_defaults(run=cmd_backup)


def add_restore(sub) -> None:
    p = sub.add_parser("restore", help="put a backup back: the database whole, then the files; migrates to this "
                                       "Shelf's schema")
    p.add_argument("backup", type=Path)
    p.add_argument("--db", default=None, help="SQLAlchemy URL (default: SHELF_DATABASE_URL or the data dir)")
    p.add_argument("--replace", action="store_true", help="replace a store that already holds photos")
    p.set_defaults(run=cmd_restore)


PARSERS = {"backup": add_backup, "restore": add_restore}
