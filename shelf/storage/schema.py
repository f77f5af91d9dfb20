"""The store's tables (SQLAlchemy Core): one schema for SQLite and PostgreSQL.

Laid out for a chain's volume (millions of regions a month):
- a region row carries what tallies need: its top-1 prediction and confidence bin, its *effective* label (the newest
  correction, else the model's top-1; updated in the same transaction as a correction) and its SKU match, so no
  query needs a window function or the corrections history;
- embeddings (float16) live in their own table, one row per photo and run, so scans of regions stay narrow;
- rollup tables (`tally_*`) hold count, sum and min of confidence per (context, class, SKU, corrected, bin) and are
  kept in step on every write (shelf.storage.rollup). Tallies, charts and the review count read them, never the regions.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass

import sqlalchemy as sa

metadata = sa.MetaData()
MAX_ID = 2**31 - 1  # ids are sa.Integer: PostgreSQL's integer (SQLite's is wider); no row has a larger one


def storable_id(value: int) -> bool:
    """Whether `value` can be a row's id at all: one that cannot is no row's, and the database would refuse it."""
    return 0 < value <= MAX_ID

runs = sa.Table(
    "runs", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("weights_sha256", sa.String(64), nullable=False),
    sa.Column("weights_source", sa.String(40), nullable=False),
    sa.Column("weights_verified", sa.Boolean, nullable=False),
    sa.Column("weights_untrained", sa.Boolean, nullable=False),
    sa.Column("torch_version", sa.String(40), nullable=False),
    sa.Column("torchvision_version", sa.String(40), nullable=False),
    sa.Column("shelf_version", sa.String(40), nullable=False),
    sa.Column("preprocessing", sa.Text, nullable=False),  # JSON
    sa.Column("backend", sa.String(60), nullable=False),
    sa.Column("region_mode", sa.String(200), nullable=False),
    sa.Column("top_k", sa.Integer, nullable=False),
)

photos = sa.Table(
    "photos", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),  # cleaned display name; never a path
    sa.Column("format", sa.String(20), nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("n_bytes", sa.Integer, nullable=False),
    sa.Column("file", sa.String(200), nullable=False),  # relative to the data dir, named by content hash
    sa.Column("store", sa.String(100), nullable=False, server_default="", index=True),
    sa.Column("aisle", sa.String(100), nullable=False, server_default="", index=True),
    sa.Column("captured_on", sa.Date, nullable=True),
    sa.Column("day", sa.Integer, nullable=False, server_default="0", index=True),  # captured_on as a day number
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

skus = sa.Table(
    "skus", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("brand", sa.String(100), nullable=False, server_default=""),
    sa.Column("category", sa.String(60), nullable=False),
    sa.Column("gtin", sa.String(14), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

PRODUCT, GAP = "product", "gap"

regions = sa.Table(
    "regions", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("photo_id", sa.Integer, sa.ForeignKey("photos.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("x1", sa.Integer, nullable=False),
    sa.Column("y1", sa.Integer, nullable=False),
    sa.Column("x2", sa.Integer, nullable=False),
    sa.Column("y2", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(10), nullable=False, server_default=PRODUCT),  # product | gap (never classified)
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),  # false once a newer run replaced it
    sa.Column("predicted_class_index", sa.SmallInteger, nullable=False),  # the model's top-1
    sa.Column("probability", sa.Float, nullable=False),  # of the model's top-1
    sa.Column("bin", sa.SmallInteger, nullable=False),  # confidence_bin(probability)
    sa.Column("class_index", sa.SmallInteger, nullable=False),  # effective: the newest correction, else top-1
    sa.Column("corrected", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("sku_id", sa.Integer, sa.ForeignKey("skus.id"), nullable=True),  # the catalog match
    sa.Column("sku_similarity", sa.Float, nullable=True),  # NULL: never matched; with sku_id NULL: "Unknown"
    sa.Index("ix_regions_probability", "probability"),  # the review queue, least confident first
    sa.Index("ix_regions_sku_id", "sku_id", postgresql_where=sa.text("sku_id IS NOT NULL"),
             sqlite_where=sa.text("sku_id IS NOT NULL")),
)

embeddings = sa.Table(
    "embeddings", metadata,  # the embeddings of one run's regions of a photo, in position order: N × 512 float16
    # (little-endian). One row per photo and run, not per region: a 1 KB value per row would cost PostgreSQL ~15 %
    # in page and index overhead. float16: catalog matching tolerates it (tests compare it with float32).
    sa.Column("photo_id", sa.Integer, sa.ForeignKey("photos.id", ondelete="CASCADE"), primary_key=True,
              autoincrement=False),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True, autoincrement=False),
    sa.Column("vectors", sa.LargeBinary, nullable=False),
)

predictions = sa.Table(
    "predictions", metadata,  # the model's top-k of each region; names come from shelf.labels
    sa.Column("region_id", sa.Integer, sa.ForeignKey("regions.id", ondelete="CASCADE"), primary_key=True,
              autoincrement=False),
    sa.Column("rank", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("class_index", sa.SmallInteger, nullable=False),
    sa.Column("probability", sa.Float, nullable=False),
    sqlite_with_rowid=False,  # the primary key is the table: no second copy of it as an index
)

corrections = sa.Table(
    "corrections", metadata,  # every reviewer label ever given (history); regions.class_index holds the newest
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("region_id", sa.Integer, sa.ForeignKey("regions.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("class_index", sa.Integer, nullable=False),
    sa.Column("label", sa.String(100), nullable=False),
    sa.Column("reviewer", sa.String(100), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

category_overrides = sa.Table(
    "category_overrides", metadata,  # analysts' edits of the shipped class → retail category map
    sa.Column("class_index", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("category", sa.String(60), nullable=False),
    sa.Column("updated_by", sa.String(100), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

class_categories = sa.Table(
    "class_categories", metadata,  # the map in force for all 1000 classes (shipped + overrides), for SQL joins
    sa.Column("class_index", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("category", sa.String(60), nullable=False),
)

sku_references = sa.Table(
    "sku_references", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("sku_id", sa.Integer, sa.ForeignKey("skus.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("file", sa.String(200), nullable=False),
    sa.Column("source", sa.String(100), nullable=False),  # "upload: NAME" or "region 123"
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("sku_id", "sha256"),
)

reference_embeddings = sa.Table(
    "reference_embeddings", metadata,  # computed once per weights file and crop mode
    sa.Column("reference_id", sa.Integer, sa.ForeignKey("sku_references.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("weights_sha256", sa.String(64), primary_key=True),
    sa.Column("crop_mode", sa.String(20), primary_key=True),
    sa.Column("embedding", sa.LargeBinary, nullable=False),
)

SKU_PRODUCT, CLASS_PRODUCT = "sku", "imagenet"

planograms = sa.Table(
    "planograms", metadata,  # what should be on the shelf: per store ('*': every store without its own) and aisle
    sa.Column("store", sa.String(100), primary_key=True),
    sa.Column("aisle", sa.String(100), primary_key=True),
    sa.Column("product_kind", sa.String(10), primary_key=True),  # sku | imagenet
    sa.Column("product_id", sa.Integer, primary_key=True, autoincrement=False),  # a SKU id or an ImageNet class
    sa.Column("expected_facings", sa.Integer, nullable=False),
    sa.Column("shelf_row", sa.Integer, nullable=True),  # 1 = top shelf; informative
    sa.Column("price", sa.Float, nullable=True),  # the shelf price head office set (price compliance); optional
    sa.Column("changed_by", sa.String(100), nullable=False),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_planograms_aisle_store", "aisle", "store"),
)

settings = sa.Table(
    "settings", metadata,
    sa.Column("key", sa.String(60), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

audit_log = sa.Table(
    "audit_log", metadata,  # who changed what: every admin action and correction batch (shelf.storage.audit)
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("who", sa.String(200), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("via", sa.String(20), nullable=False),  # local | oidc | header | token
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("target", sa.String(300), nullable=False),
    sa.Column("before", sa.Text),  # JSON, where it applies
    sa.Column("after", sa.Text),   # JSON
    sa.Index("ix_audit_log_who_id", "who", "id"),  # the Audit log page's filters, newest first
    sa.Index("ix_audit_log_action_id", "action", "id"),
)

# The audit log is append-only in the database itself: a trigger refuses every UPDATE and DELETE (and, on
# PostgreSQL, TRUNCATE), whoever sends it. Nothing in Shelf changes a row once written; dropping the table (a
# whole-database reset) is still possible. Idempotent statements: a migration (shelf.storage.migrations) runs them
# on older stores, and a new audit_log table gets them when it is created.
APPEND_ONLY = "the audit log is append-only: its rows cannot be changed or deleted"
_AUDIT_GUARD = {
    "sqlite": [f"CREATE TRIGGER IF NOT EXISTS audit_log_no_{op.lower()} BEFORE {op} ON audit_log "
               f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END" for op in ("UPDATE", "DELETE")],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN RAISE EXCEPTION '{APPEND_ONLY}'; END $$",
        "DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log",
        "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"],
}


def guard_audit_log(conn) -> None:
    """Make the audit_log table append-only (see above); safe to run again."""
    for statement in _AUDIT_GUARD.get(conn.dialect.name, ()):
        conn.exec_driver_sql(statement)


sa.event.listen(audit_log, "after_create", lambda _table, connection, **_kw: guard_audit_log(connection))
region_profiles = sa.Table(
    "region_profiles", metadata,  # auto's settings tuned from labelled photos; a new version per tuning, never edited
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(40), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("params", sa.Text, nullable=False),  # JSON: the fields that differ from the default profile
    sa.Column("figures", sa.Text, nullable=False),  # JSON: how it measured when it was tuned
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("removed", sa.Boolean, nullable=False, server_default=sa.false()),  # kept for the runs that used it
    sa.UniqueConstraint("name", "version"),
)

store_profiles = sa.Table(
    "store_profiles", metadata,  # the region profile `auto` uses for a store's photos (others: the default)
    sa.Column("store", sa.String(100), primary_key=True),
    sa.Column("profile", sa.String(40), nullable=False),
)

schema_version = sa.Table(
    "schema_version", metadata,  # one row per migration step applied
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)

# ---------------------------------------------------------------------------------------------------------------
# Confidence bins: thresholds move in steps of 0.05, so a bin is "how many steps the probability reaches".
# bin(p) >= k  ⇔  p >= THRESHOLD_STEPS[k] exactly (the same floats on both sides), for every k in 0..20.

THRESHOLD_STEPS: tuple[float, ...] = tuple(round(k * 0.05, 2) for k in range(21))
HISTOGRAM_BINS = 20  # bin 20 (a probability of exactly 1.0) is drawn with bin 19


def confidence_bin(probability: float) -> int:
    return max(0, bisect.bisect_right(THRESHOLD_STEPS, probability) - 1)


def threshold_step(threshold: float) -> int:
    """The step index of a threshold from a slider (0.15000000000000002 → 3)."""
    return min(20, max(0, round(float(threshold) * 20)))


# ---------------------------------------------------------------------------------------------------------------
# Rollups: count, sum and min of top-1 confidence per cell, at several grains. A *class* grain keys cells by
# (context, class_index, sku_key, corrected, bin); a *category* grain by (context, category, corrected, bin) — eight
# categories instead of ~1000 class × SKU pairs, so the charts' queries read tens of thousands of rows at 10 M
# regions. A query reads the first grain (in ROLLUPS order) that has every dimension it filters or groups by, else
# the regions themselves. `dated` (day > 0) stands in for `day` when a date range covers every dated photo.

CLASS_KEYS = ("class_index", "sku_key", "corrected", "bin")
CATEGORY_KEYS = ("category", "corrected", "bin")
ROLLUP_MEASURES = ("n", "sum_p", "min_p")
UNKNOWN_SKU_KEY, NOT_MATCHED_SKU_KEY = 0, -1
_TYPES = {"day": sa.Integer, "dated": sa.Boolean, "store": sa.String(100), "aisle": sa.String(100),
          "class_index": sa.SmallInteger, "sku_key": sa.Integer,  # a SKU id; 0 Unknown; -1 never matched
          "category": sa.String(60), "corrected": sa.Boolean, "bin": sa.SmallInteger}


@dataclass(frozen=True)
class Grain:
    table: sa.Table
    context: tuple[str, ...]  # day | dated, store, aisle
    keys: tuple[str, ...]  # CLASS_KEYS or CATEGORY_KEYS

    @property
    def by_category(self) -> bool:
        return self.keys == CATEGORY_KEYS

    @property
    def columns(self) -> tuple[str, ...]:
        return self.context + self.keys

    @property
    def dimensions(self) -> set[str]:
        """What a query can filter or group by on this grain."""
        names = set(self.context) | ({"dated"} if "day" in self.context else set())
        return names | ({"category"} if self.by_category else {"class_index", "sku_key", "category"})


def _grain(name: str, context: tuple[str, ...], keys: tuple[str, ...], *indexes: tuple[str, ...]) -> Grain:
    table = sa.Table(name, metadata,
                     *(sa.Column(c, _TYPES[c], primary_key=True, autoincrement=False) for c in context + keys),
                     sa.Column("n", sa.Integer, nullable=False), sa.Column("sum_p", sa.Float, nullable=False),
                     sa.Column("min_p", sa.Float, nullable=False),
                     *(sa.Index(f"ix_{name}_{'_'.join(columns)}", *columns) for columns in indexes))
    return Grain(table, context, keys)


ROLLUPS = (  # in order of preference: smallest expected first
    _grain("tally_day_categories", ("day",), CATEGORY_KEYS),
    _grain("tally_classes", ("dated",), CLASS_KEYS),
    _grain("tally_place_categories", ("store", "aisle", "dated"), CATEGORY_KEYS),
    _grain("tally_place_classes", ("store", "aisle", "dated"), CLASS_KEYS),
    # stores over time (a store filter with the trend, a date range with share by store): ~2 M rows at 10 M regions
    _grain("tally_day_store_categories", ("day", "store"), CATEGORY_KEYS, ("store", "day")),
    _grain("tally_day_classes", ("day",), CLASS_KEYS),
)

# Empty shelf: the width of the gaps and of the whole shelf (gaps + facings, pixels) per photo context, over the
# current regions of photos recognised in a gap-finding region mode; kept by shelf.storage.rollup like the tallies. Sums
# only, so a change is applied as "subtract the old rows, add the new ones".
GAP_FINDING_MODES = ("auto",)  # region modes that look for gaps; other photos are "not measured", not "full"
WIDTH_CONTEXT, WIDTH_MEASURES = ("day", "store", "aisle"), ("gap_width", "shelf_width")
shelf_width_rollup = sa.Table(
    "tally_shelf_widths", metadata,
    *(sa.Column(c, _TYPES[c], primary_key=True, autoincrement=False) for c in WIDTH_CONTEXT),
    *(sa.Column(m, sa.BigInteger, nullable=False) for m in WIDTH_MEASURES),
    sa.Index("ix_tally_shelf_widths_store_aisle", "store", "aisle"),
)

batches = sa.Table(
    "batches", metadata,  # one row per `python -m shelf batch`: what it read, where it ran, how far it got
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("source", sa.String(500), nullable=False),
    sa.Column("engine", sa.String(20), nullable=False),  # local | ray
    sa.Column("place", sa.String(200), nullable=False),  # who and where: user@host, Ray nodes and workers
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=True),
    sa.Column("status", sa.String(20), nullable=False),  # running | finished | interrupted | failed
    sa.Column("total", sa.Integer, nullable=False),
    sa.Column("done", sa.Integer, nullable=False, server_default="0"),  # stored + already stored + errors
    sa.Column("stored", sa.Integer, nullable=False, server_default="0"),
    sa.Column("errors", sa.Integer, nullable=False, server_default="0"),
    sa.Column("errors_file", sa.String(500), nullable=False, server_default=""),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),  # heartbeat while running
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
)

api_tokens = sa.Table(
    "api_tokens", metadata,  # bearer tokens of the HTTP API (shelf.serving.tokens): only the sha256 of each is kept
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False, index=True),  # who or what uses it; unique among active ones
    sa.Column("role", sa.String(20), nullable=False),  # shelf.access.ROLES
    sa.Column("store", sa.String(100), nullable=True),  # a store app's token acts for that store only (version 4)
    sa.Column("sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
)

# ---------------------------------------------------------------------------------------------------------------
# Store tasks (shelf.storage.tasks, shelf.analytics.tasks, shelf.serving.webhooks): a gap found in a photo becomes a
# task for its store, and every change of a task is an event written to an outbox in the same transaction, which a
# worker delivers to the webhooks later. All of it arrived in schema version 5 (shelf.storage.migrations._to_v5).

OPEN, ACKNOWLEDGED, DONE, VERIFIED, REOPENED = "open", "acknowledged", "done", "verified", "reopened"
TASK_STATES = (OPEN, ACKNOWLEDGED, DONE, REOPENED, VERIFIED)
TASK_FINDINGS = ("missing", "under", "empty", "price_wrong", "label_missing")  # what opened a task (its `finding`)
EMPTY_SHELF_PRODUCT = "empty"  # product_kind of a task about the empty-shelf share of an aisle (product_id 0)
PRICE_TASK = "price:"  # product_kind prefix of a task about a product's shelf-edge label (price:sku, price:imagenet),
# so a product has a price task beside its facings task, under the same unique index (schema version 8)

task_checks = sa.Table(
    "task_checks", metadata,  # a photo stored whose store × aisle × date has not been evaluated for tasks yet
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("photo_id", sa.Integer, sa.ForeignKey("photos.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

tasks = sa.Table(
    "tasks", metadata,  # one per store × aisle × product while it is not verified (the partial unique index)
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("store", sa.String(100), nullable=False),
    sa.Column("aisle", sa.String(100), nullable=False),
    sa.Column("product_kind", sa.String(20), nullable=False),  # sku | imagenet | empty | price:sku | price:imagenet
    sa.Column("product_id", sa.Integer, nullable=False),
    sa.Column("product", sa.String(200), nullable=False),  # readable name, as it was when the task changed last
    sa.Column("state", sa.String(20), nullable=False),  # TASK_STATES
    sa.Column("finding", sa.String(20), nullable=False),  # missing | under | empty | price_wrong | label_missing
    sa.Column("expected_facings", sa.Integer, nullable=True),
    sa.Column("found_facings", sa.Integer, nullable=True),
    sa.Column("empty_share", sa.Float, nullable=True),
    sa.Column("day", sa.Integer, nullable=False),  # the photo date of the newest evidence
    sa.Column("photo_id", sa.Integer, sa.ForeignKey("photos.id", ondelete="SET NULL"), nullable=True),
    sa.Column("evidence", sa.Text, nullable=False),  # JSON: photo size, gap boxes, boxes of the product found
    sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("acknowledged_by", sa.String(200), nullable=True),
    sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("done_by", sa.String(200), nullable=True),
    sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("verified_photo_id", sa.Integer, sa.ForeignKey("photos.id", ondelete="SET NULL"), nullable=True),
    sa.Column("reopened", sa.Integer, nullable=False, server_default="0"),  # times a 'done' was not borne out
    sa.Column("hours_to_fix", sa.Float, nullable=True),  # verified_at - opened_at, for the time-to-fix figures
    # Covering indexes for the Tasks page at 100 000 tasks: counts per state and time to fix, by store or age.
    sa.Index("ix_tasks_state_store", "state", "store", "hours_to_fix"),
    sa.Index("ix_tasks_opened", "opened_at", "state", "store", "hours_to_fix"),
    sa.Index("ix_tasks_store_aisle_product", "store", "aisle", "product_kind", "product_id"),
    sa.Index("ux_tasks_active", "store", "aisle", "product_kind", "product_id", unique=True,
             postgresql_where=sa.text("state <> 'verified'"), sqlite_where=sa.text("state <> 'verified'")),
)

task_rules = sa.Table(
    "task_rules", metadata,  # which findings open tasks, per store / aisle / product ('*': any); the most specific wins
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("store", sa.String(100), nullable=False),
    sa.Column("aisle", sa.String(100), nullable=False),
    sa.Column("product", sa.String(120), nullable=False),  # '*', a SKU name or imagenet:<index>, as in planograms
    sa.Column("statuses", sa.String(40), nullable=False),  # comma-separated: missing, under, price_wrong, label_missing
    sa.Column("min_gap", sa.Integer, nullable=False),  # facings short of the plan before a task opens
    sa.Column("empty_share_limit", sa.Float, nullable=True),  # an empty-shelf share above it opens a task
    sa.Column("quiet_hours", sa.String(20), nullable=False, server_default=""),  # "22:00-06:00": no task opens
    sa.Column("timezone", sa.String(60), nullable=False, server_default="UTC"),  # of the quiet hours
    sa.Column("changed_by", sa.String(200), nullable=False),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("store", "aisle", "product"),
)

task_events = sa.Table(
    "task_events", metadata,  # the outbox: every task change, written in the change's own transaction
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("task_id", sa.Integer, sa.ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("event", sa.String(30), nullable=False),  # task.opened, task.updated, task.acknowledged, ...
    sa.Column("key", sa.String(64), nullable=False, unique=True),  # the idempotency key receivers dedupe on
    sa.Column("body", sa.Text, nullable=False),  # the JSON delivered, byte for byte (it is what is signed)
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

webhooks = sa.Table(
    "webhooks", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("url", sa.String(500), nullable=False),
    sa.Column("secret", sa.String(100), nullable=False),  # signs each body (HMAC-SHA256); needed in clear to sign
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("lease_owner", sa.String(200), nullable=True),  # the worker delivering to it now, one at a time
    sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries", metadata,  # one per event and webhook active when the event was written
    sa.Column("webhook_id", sa.Integer, sa.ForeignKey("webhooks.id", ondelete="CASCADE"), primary_key=True,
              autoincrement=False),
    sa.Column("event_id", sa.Integer, sa.ForeignKey("task_events.id", ondelete="CASCADE"), primary_key=True,
              autoincrement=False),
    sa.Column("task_id", sa.Integer, nullable=False),  # events of one task go out in order
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_status", sa.Integer, nullable=True),  # the receiver's HTTP status
    sa.Column("last_error", sa.String(300), nullable=True),
    sa.Index("ix_webhook_deliveries_pending", "webhook_id", "delivered_at", "event_id"),
)

TASK_TABLES = (task_checks, tasks, task_rules, task_events, webhooks, webhook_deliveries)
# Shelf-edge prices (`--prices`): the labels read on a photo, tied to the run whose regions they price. A photo's
# current labels are those of the run of its active regions; `price_scans` says which runs read prices at all, so
# "no label found" is never confused with "not looked for".

price_scans = sa.Table(
    "price_scans", metadata,
    sa.Column("photo_id", sa.Integer, sa.ForeignKey("photos.id", ondelete="CASCADE"), primary_key=True,
              autoincrement=False),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True, autoincrement=False),
    sa.Column("labels", sa.Integer, nullable=False),
    sa.Column("seconds", sa.Float, nullable=False),
)

price_labels = sa.Table(
    "price_labels", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("photo_id", sa.Integer, sa.ForeignKey("photos.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("x1", sa.Integer, nullable=False),
    sa.Column("y1", sa.Integer, nullable=False),
    sa.Column("x2", sa.Integer, nullable=False),
    sa.Column("y2", sa.Integer, nullable=False),
    sa.Column("text", sa.String(300), nullable=False),  # every line the OCR read, biggest first
    sa.Column("confidence", sa.Float, nullable=False),  # the OCR's, in the line the price came from
    sa.Column("read_price", sa.Float, nullable=True),  # the amount read (NULL: no price could be read)
    sa.Column("price", sa.Float, nullable=True),  # effective: the newest correction, else read_price
    sa.Column("quantity", sa.Integer, nullable=False, server_default="1"),  # a multi-buy's items (2 for 3.00)
    sa.Column("per", sa.String(20), nullable=False, server_default=""),  # a unit price's unit ("kg")
    sa.Column("corrected", sa.Boolean, nullable=False, server_default=sa.false()),
)

price_label_facings = sa.Table(
    "price_label_facings", metadata,  # the facing group a label prices: the product regions it belongs to
    sa.Column("label_id", sa.Integer, sa.ForeignKey("price_labels.id", ondelete="CASCADE"), primary_key=True,
              autoincrement=False),
    sa.Column("region_id", sa.Integer, sa.ForeignKey("regions.id", ondelete="CASCADE"), primary_key=True,
              autoincrement=False),
    sa.Column("anchor", sa.Boolean, nullable=False),  # the facing the label sits under: what compliance goes by
    sa.Index("ix_price_label_facings_region", "region_id"),
)

price_corrections = sa.Table(
    "price_corrections", metadata,  # every price a reviewer gave a label (history); price_labels.price the newest
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("label_id", sa.Integer, sa.ForeignKey("price_labels.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("text", sa.String(100), nullable=False),  # as typed
    sa.Column("price", sa.Float, nullable=True),  # NULL: "this label shows no price"
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("reviewer", sa.String(100), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

PRICE_TABLES = (price_scans, price_labels, price_label_facings, price_corrections)
