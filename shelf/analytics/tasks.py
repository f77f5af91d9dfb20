"""Store tasks from compliance findings: each photo stored is evaluated with its store × aisle × date.

`evaluate_pending` takes the photos waiting in `task_checks` (the store writes one in each photo's own transaction,
on every path: Recognize, `recognize`, `batch`, the API), computes compliance for their store × aisle × date
(shelf.analytics.compliance.place_lines: the same numbers as the Compliance page) and turns it into task changes, in
one transaction per store × aisle × date with the checks it used, so a crash leaves them waiting, never half done:

- a planned product that is `missing` or `under` (as the rules say: which statuses, a minimum gap in facings, no
  task in quiet hours) opens a task, or updates the one not yet verified for that store × aisle × product (its
  evidence and counts always; an event when the finding itself changes, missing ↔ under);
- optionally an empty-shelf share over a limit opens one for the aisle (product "empty shelf");
- when the rules ask for `price_wrong` or `label_missing` and a photo being evaluated had its shelf-edge prices
  read, a planned product whose label shows another price, or has no label, opens a price task: a task of its own
  beside the product's facings task (product_kind `price:sku` / `price:imagenet`), verified by a later priced photo
  showing the planned price. Photos read without prices neither open nor verify price tasks: nobody looked;
- a product found at plan (found ≥ expected; the share back under its limit) verifies the task, whoever touched it;
- a task marked done that a photo stored afterwards does not show at plan is reopened.

Photos are compared by date: a photo dated before a task's evidence changes nothing, and undated photos open no
task (nothing says which is later). The callers run it right after storing (the app, the CLI, the API, a batch as
its photos come in), and the delivery worker runs it too, so whatever a crash left waiting is evaluated later.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from shelf.access import Identity
from shelf.analytics.compliance import MISSING, UNDER, place_lines
from shelf.analytics.planogram import ANY_STORE, product_name, product_text
from shelf.analytics.prices import (
    LABEL_MISSING,
    PRICE_OK,
    PRICE_WRONG,
    PlacePrice,
    place_prices,
    price_read,
)
from shelf.storage import audit, store
from shelf.storage import tasks as stored
from shelf.storage.schema import (
    CLASS_PRODUCT,
    DONE,
    EMPTY_SHELF_PRODUCT,
    GAP,
    PRICE_TASK,
    PRODUCT,
    REOPENED,
    SKU_PRODUCT,
    VERIFIED,
    photos,
    regions,
    settings,
    shelf_width_rollup,
    skus,
    threshold_step,
)

log = logging.getLogger(__name__)
EMPTY = "empty"  # the finding of an aisle whose empty-shelf share is over its limit
ANY = ANY_STORE  # '*' in a rule: any store, aisle or product
THRESHOLD_SETTING = "tasks_min_confidence"  # counted facings: confidence at least this (or corrected)
FACING_STATUSES, PRICE_FINDINGS = (MISSING, UNDER), (PRICE_WRONG, LABEL_MISSING)
RULE_STATUSES = FACING_STATUSES + PRICE_FINDINGS  # what a rule's `statuses` may name
QUIET = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


def system(photo_id: int) -> Identity:
    """Who the audit log names for a change the rules made."""
    return Identity(name=f"Shelf tasks (photo {photo_id})", role="system", via="rules")


@dataclass(frozen=True)
class Rule:
    store: str = ANY
    aisle: str = ANY
    product: str = ANY  # a SKU name or imagenet:<index>, as in planograms
    statuses: tuple[str, ...] = (MISSING, UNDER)
    min_gap: int = 1
    empty_share_limit: float | None = None
    quiet_hours: str = ""
    timezone: str = "UTC"

    @property
    def specificity(self) -> int:
        return 4 * (self.store != ANY) + 2 * (self.aisle != ANY) + (self.product != ANY)

    def applies(self, store_name: str, aisle: str, product: str) -> bool:
        return self.store in (ANY, store_name) and self.aisle in (ANY, aisle) and self.product in (ANY, product)

    def quiet_at(self, when: dt.datetime) -> bool:
        """Whether `when` falls in the quiet hours (in the rule's time zone; a span may cross midnight)."""
        if not self.quiet_hours:
            return False
        a, b, c, d = map(int, QUIET.match(self.quiet_hours).groups())
        start, end = a * 60 + b, c * 60 + d
        local = when.astimezone(ZoneInfo(self.timezone))
        minute = local.hour * 60 + local.minute
        return start <= minute < end if start <= end else minute >= start or minute < end


DEFAULT_RULE = Rule()


def parse_rule(record: dict) -> Rule:
    """One rule from untrusted text (a table edited on the Tasks page, the CLI); ValueError says what is wrong."""
    def text(name: str, default: str = "") -> str:
        value = record.get(name)
        return default if value is None or (isinstance(value, float) and pd.isna(value)) else str(value).strip()

    statuses = tuple(s.strip().lower() for s in text("statuses", f"{MISSING},{UNDER}").split(",") if s.strip())
    if set(statuses) - set(RULE_STATUSES):
        raise ValueError(f"statuses must name some of {', '.join(RULE_STATUSES)} (comma-separated) or be empty, "
                         f"not {text('statuses')[:60]!r}")
    try:
        min_gap = int(float(text("min_gap", "1")))
    except ValueError:
        raise ValueError(f"min_gap must be a whole number of facings, not {text('min_gap')[:20]!r}") from None
    if min_gap < 1:
        raise ValueError("min_gap must be at least 1 facing")
    limit = text("empty_share_limit")
    try:
        share = None if limit == "" else float(limit.rstrip("%")) / (100 if limit.endswith("%") else 1)
    except ValueError:
        raise ValueError(f"empty_share_limit must be a share (0.2 or 20%), not {limit[:20]!r}") from None
    if share is not None and not 0 <= share < 1:
        raise ValueError(f"empty_share_limit must be from 0 up to (not including) 1, not {limit[:20]!r}")
    quiet = text("quiet_hours").replace(" ", "")
    if quiet and not QUIET.match(quiet):
        raise ValueError(f"quiet_hours must look like 22:00-06:00, not {quiet[:20]!r}")
    zone = text("timezone", "UTC") or "UTC"
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"timezone {zone[:40]!r} is not a time zone name (like Europe/Lisbon or UTC)") from None
    return Rule(text("store", ANY) or ANY, text("aisle", ANY) or ANY, text("product", ANY) or ANY, statuses, min_gap,
                share, quiet, zone)


def rule_row(rule: Rule) -> dict:
    return {**dataclasses.asdict(rule), "statuses": ",".join(rule.statuses)}


def parse_rules(records: Sequence[dict]) -> tuple[list[Rule], list[str]]:
    """Rules from rows; each bad row gets a message with its number, and two rows for the same store, aisle and
    product are refused (the second)."""
    rules, errors, seen = [], [], set()
    for number, record in enumerate(records, start=1):
        try:
            rule = parse_rule(record)
        except ValueError as exc:
            errors.append(f"rule {number}: {exc}")
            continue
        key = (rule.store, rule.aisle, rule.product)
        if key in seen:
            errors.append(f"rule {number}: a rule for store {key[0]}, aisle {key[1]}, product {key[2]} is given twice")
            continue
        seen.add(key)
        rules.append(rule)
    return rules, errors


def rule_for(rules: Sequence[Rule], store_name: str, aisle: str, product: str = ANY) -> Rule:
    """The most specific rule that applies (product ANY: the rules of the whole aisle), else the default."""
    found = [r for r in rules if r.applies(store_name, aisle, product) and (product != ANY or r.product == ANY)]
    return max(found, key=lambda r: r.specificity, default=DEFAULT_RULE)


def rules(engine_or_conn) -> list[Rule]:
    return [Rule(**{**row, "statuses": tuple(s for s in row["statuses"].split(",") if s)})
            for row in ({k: r[k] for k in stored.RULE_COLUMNS} for r in stored.rule_rows(engine_or_conn))]


# ---------------------------------------------------------------------------------------------------------------
# Evaluation


@dataclass(frozen=True)
class Finding:
    key: tuple[str, int]  # (product_kind, product_id)
    product: str  # readable
    at_plan: bool
    opens: bool  # a task should be open for it (the rules say so, and it is not quiet hours)
    finding: str  # missing | under | empty | price_wrong | label_missing | ok | price_ok
    expected: int | None = None
    found: int | None = None
    empty_share: float | None = None
    price: PlacePrice | None = None  # a price task's: the planned price and the label read


def _price_findings(conn: Connection, place: tuple[str, str, int], photo_ids: Sequence[int], lines: list,
                    names: dict, rules_: Sequence[Rule], now: dt.datetime) -> list[Finding]:
    """Price tasks' findings (whatever the rules ask: a price task opened before a rule changed is still verified);
    an unreadable label says nothing either way, so it gives none."""
    store_name, aisle, _ = place
    facings = {(line.product_kind, int(line.product_id)): line for line in lines}
    found = []
    for price in place_prices(conn, place, photo_ids, {key: line.found for key, line in facings.items()}):
        if price.status not in (PRICE_OK, *PRICE_FINDINGS):
            continue
        kind, product_id = price.product
        rule = rule_for(rules_, store_name, aisle, product_text(kind, product_id, names))
        line = facings[price.product]
        found.append(Finding((PRICE_TASK + kind, product_id), product_name(kind, product_id, names),
                             price.status == PRICE_OK, price.status in rule.statuses and not rule.quiet_at(now),
                             price.status, int(line.expected_facings), int(line.found), price=price))
    return found


def _findings(conn: Connection, place: tuple[str, str, int], photo_ids: Sequence[int], threshold: float,
              rules_: Sequence[Rule], now: dt.datetime) -> list[Finding]:
    store_name, aisle, day = place
    lines = place_lines(conn, store_name, aisle, day, threshold)
    names = dict(conn.execute(sa.select(skus.c.id, skus.c.name)).all()) if any(
        line.product_kind == SKU_PRODUCT for line in lines) else {}
    found = []
    for line in lines:
        rule = rule_for(rules_, store_name, aisle, product_text(line.product_kind, line.product_id, names))
        status = MISSING if line.found == 0 else UNDER if line.found < line.expected_facings else "ok"
        short = line.expected_facings - line.found
        found.append(Finding((line.product_kind, int(line.product_id)),
                             product_name(line.product_kind, int(line.product_id), names), short <= 0,
                             status in rule.statuses and short >= rule.min_gap and not rule.quiet_at(now), status,
                             int(line.expected_facings), int(line.found)))
    aisle_rule = rule_for(rules_, store_name, aisle)
    if aisle_rule.empty_share_limit is not None:
        widths = conn.execute(sa.select(shelf_width_rollup.c.gap_width, shelf_width_rollup.c.shelf_width).where(
            shelf_width_rollup.c.day == day, shelf_width_rollup.c.store == store_name,
            shelf_width_rollup.c.aisle == aisle)).one_or_none()
        if widths is not None and widths.shelf_width > 0:  # measured (auto mode)
            share = widths.gap_width / widths.shelf_width
            over = share > aisle_rule.empty_share_limit
            found.append(Finding((EMPTY_SHELF_PRODUCT, 0), "empty shelf", not over,
                                 over and not aisle_rule.quiet_at(now), EMPTY if over else "ok", empty_share=share))
    return found + _price_findings(conn, place, photo_ids, lines, names, rules_, now)


_NEWEST_PHOTO = (sa.select(photos.c.id, photos.c.width, photos.c.height, photos.c.created_at)
                 .where(photos.c.store == sa.bindparam("store"), photos.c.aisle == sa.bindparam("aisle"),
                        photos.c.day == sa.bindparam("day")).order_by(photos.c.id.desc()).limit(1))
_PHOTO_REGIONS = (sa.select(regions.c.x1, regions.c.y1, regions.c.x2, regions.c.y2, regions.c.kind,
                            regions.c.class_index, regions.c.sku_id, regions.c.corrected,
                            sa.or_(regions.c.corrected, regions.c.bin >= sa.bindparam("step")).label("n"))
                  .where(regions.c.photo_id == sa.bindparam("photo_id"), regions.c.active)
                  .order_by(regions.c.position))  # both built once: they run after every photo stored


def _evidence(conn: Connection, place: tuple[str, str, int], threshold: float) -> tuple[dict, list]:
    """The newest photo of the place (id, size, stored when) and its current regions, for the tasks' evidence."""
    store_name, aisle, day = place
    photo = conn.execute(_NEWEST_PHOTO, {"store": store_name, "aisle": aisle, "day": day}).one()
    found = conn.execute(_PHOTO_REGIONS, {"photo_id": photo.id, "step": threshold_step(threshold)}).all()
    return dict(photo._mapping), found


def _evidence_json(photo: dict, boxes: list, finding: Finding) -> str:
    """The photo, its gaps and the product's facings found on it; for a price task the label instead of the gaps:
    its photo (the label read may be on another photo of the same date), box and text, planned and read price."""
    kind, product_id = finding.key
    kind = kind.removeprefix(PRICE_TASK)

    def counts_for_product(r) -> bool:
        if r.kind != PRODUCT or not r.n:
            return False
        if kind == SKU_PRODUCT:
            return r.sku_id == product_id and not r.corrected
        return kind == CLASS_PRODUCT and r.class_index == product_id

    if finding.price is None:
        return json.dumps({"photo_id": photo["id"], "width": photo["width"], "height": photo["height"],
                           "gaps": [[r.x1, r.y1, r.x2, r.y2] for r in boxes if r.kind == GAP],
                           "found": [[r.x1, r.y1, r.x2, r.y2] for r in boxes if counts_for_product(r)]})
    label = finding.price.label
    on_newest = label is None or label.photo_id == photo["id"]
    shown = photo if on_newest else {"id": label.photo_id, "width": label.width, "height": label.height}
    return json.dumps({"photo_id": shown["id"], "width": shown["width"], "height": shown["height"], "gaps": [],
                       "found": [[r.x1, r.y1, r.x2, r.y2] for r in boxes if counts_for_product(r)] if on_newest
                       else [], "labels": [] if label is None else [[label.x1, label.y1, label.x2, label.y2]],
                       "label_text": None if label is None else label.text, "planned_price": finding.price.planned,
                       "price_read": price_read(label)})


def _aware(at: dt.datetime | None) -> dt.datetime | None:
    return at if at is None or at.tzinfo else at.replace(tzinfo=dt.timezone.utc)


def evaluate_place(engine: Engine, store_name: str, aisle: str, day: int, now: dt.datetime | None = None) -> Counter:
    """Evaluate one store × aisle × date whose photos wait in task_checks; returns what changed (opened, updated,
    verified, reopened). Nothing, when another worker evaluated it first."""
    now, changes, place = now or store.utc_now(), Counter(), (store_name, aisle, day)
    with store.write_transaction(engine) as conn:
        stored.lock_place(conn, store_name, aisle)
        photo_ids = stored.take_checks(conn, store_name, aisle, day)
        if not photo_ids or not day:
            return changes
        threshold = float(conn.execute(sa.select(settings.c.value).where(settings.c.key == THRESHOLD_SETTING))
                          .scalar_one_or_none() or 0.0)
        findings = _findings(conn, place, photo_ids, threshold, rules(conn), now)
        if not findings:
            return changes
        photo, boxes = _evidence(conn, place, threshold)
        active, closed = stored.tasks_of_place(conn, store_name, aisle)
        silent = []  # tasks whose newest photo says what they said: their evidence moves, no event
        for f in findings:
            task = active.get(f.key)
            if task is None and not (f.opens and closed.get(f.key, 0) <= day):
                continue
            if task is not None and task.day > day:  # an older photo than the task's evidence says nothing new
                continue
            values = {"product": f.product[:200], "finding": f.finding, "expected_facings": f.expected,
                      "found_facings": f.found, "empty_share": f.empty_share, "day": day, "photo_id": photo["id"],
                      "evidence": _evidence_json(photo, boxes, f)}
            if task is None:
                stored.open_task(conn, {**values, "store": store_name, "aisle": aisle, "product_kind": f.key[0],
                                        "product_id": f.key[1]}, now)
                changes["opened"] += 1
            elif f.at_plan:
                values = {**values, "finding": task.finding, "state": VERIFIED, "verified_at": now,
                          "verified_photo_id": photo["id"],
                          "hours_to_fix": (now - _aware(task.opened_at)).total_seconds() / 3600}
                changes["verified"] += stored.change_task(conn, task, values, "task.verified", now)
            elif task.state == DONE:
                if task.done_at is None or _aware(photo["created_at"]) > _aware(task.done_at):  # after the work
                    changes["reopened"] += stored.change_task(conn, task, {
                        **values, "state": REOPENED, "reopened": task.reopened + 1}, "task.reopened", now)
            elif f.finding != task.finding:  # missing ↔ under: news for the store (a count that moves is not)
                changes["updated"] += stored.change_task(conn, task, values, "task.updated", now)
            else:
                silent.append((task.id, task.state, values))
        stored.refresh_evidence(conn, silent, now)
        if changes:
            audit.record(conn, system(photo["id"]), "work_task", f"{store_name}/{aisle} on {store.date_of_day(day)}",
                         None, dict(changes))
    return changes


def evaluate_pending(engine: Engine, now: dt.datetime | None = None, limit: int = 500) -> Counter:
    """Evaluate every store × aisle × date with photos waiting (at most `limit` of them per call); returns what
    changed, with "problems" counting places that could not be evaluated (logged; their checks stay)."""
    total = Counter()
    if stored.drop_checks_when_idle(engine):
        return total
    for place in stored.pending_places(engine, limit):
        try:
            total += evaluate_place(engine, *place, now=now)
        except Exception:  # one place's failure must not stop the others; its checks stay for the next round
            log.exception("store tasks: %s / %s / day %s could not be evaluated", *place)
            total["problems"] += 1
    return total


# ---------------------------------------------------------------------------------------------------------------
# Time to fix


def time_to_fix(engine: Engine, f: stored.TaskFilter = stored.TaskFilter()) -> pd.DataFrame:
    """Per store: verified tasks, median and p90 hours from open to verified (linear interpolation, as pandas'
    quantile), from the few ranks around each quantile that the database picks out."""
    quantiles = {"median_hours": 0.5, "p90_hours": 0.9}
    by_store: dict[str, tuple[int, dict[int, float]]] = {}
    for store_name, n, rank, hours in stored.fix_hour_ranks(engine, f, list(quantiles.values())):
        by_store.setdefault(store_name, (n, {}))[1][rank - 1] = hours
    rows = []
    for store_name, (n, hours) in sorted(by_store.items()):
        row = {"store": store_name, "verified": n}
        for column, q in quantiles.items():
            position = (n - 1) * q
            low = int(position)
            high = min(low + 1, n - 1)
            row[column] = hours[low] + (hours[high] - hours[low]) * (position - low)
        rows.append(row)
    return pd.DataFrame(rows, columns=["store", "verified", "median_hours", "p90_hours"])


def time_to_fix_spec(table: pd.DataFrame, most: int = 25) -> tuple[pd.DataFrame, dict]:
    """(data, Vega-Lite spec) of time_to_fix's table: median and p90 bars per store, slowest p90 first, at most
    `most` stores. A plain spec, not an Altair chart: importing Altair costs the page's first render 1.4 s here."""
    slowest = table.sort_values("p90_hours", ascending=False).head(most)
    data = slowest.melt(id_vars=["store", "verified"], value_vars=["median_hours", "p90_hours"], var_name="measure",
                        value_name="hours")
    data["measure"] = data["measure"].map({"median_hours": "median", "p90_hours": "p90"})
    data["store"] = data["store"].map(lambda s: s or "—")
    spec = {"mark": {"type": "bar"}, "encoding": {
        "y": {"field": "store", "type": "nominal", "title": "Store", "sort": list(slowest["store"].map(
            lambda s: s or "—"))},
        "yOffset": {"field": "measure", "type": "nominal", "sort": ["median", "p90"]},
        "x": {"field": "hours", "type": "quantitative", "title": "Hours from open to verified"},
        "color": {"field": "measure", "type": "nominal", "title": "",
                  "scale": {"domain": ["median", "p90"], "range": ["#4c78a8", "#f58518"]}},
        "tooltip": [{"field": "store"}, {"field": "measure"}, {"field": "hours", "type": "quantitative",
                                                                 "format": ".1f"},
                    {"field": "verified", "type": "quantitative", "title": "verified tasks"}]}}
    return data, spec
