"""Tasks: what each store must fix on its shelves, from the photo that found it to the photo that proves it fixed
(shelf.analytics.tasks opens, verifies and reopens them; shelf.storage.tasks keeps them), time to fix per store,
and for admins the rules, the webhooks and their outbox."""
import datetime as dt

import pandas as pd
import streamlit as st

from shelf import access
from shelf.analytics import tasks as evaluator
from shelf.analytics.review import photo_for_thumbnails
from shelf.ingest.overlay import draw_overlay
from shelf.ingest.prices import ShelfLabel, parse_price
from shelf.ingest.regions import Box
from shelf.serving import ui
from shelf.storage import outbox
from shelf.storage import tasks as stored
from shelf.storage.schema import TASK_FINDINGS, TASK_STATES, VERIFIED
from shelf.storage.store import change_setting, get_setting, photo_record

ui.use_router()


def dash(value) -> str:
    """An empty store or aisle, as the other pages show it."""
    return str(value) if value else "—"



st.title("Tasks")
engine = ui.store()
me = ui.current_identity()
PAGE_SIZE = 50
AGES = {"Any age": (None, None), "Opened in the last 24 hours": (None, 24), "Opened in the last 7 days": (None, 168),
        "Open longer than 24 hours": (24, None), "Open longer than 3 days": (72, None)}
FINDINGS = {"missing": "missing (no facing)", "under": "under (too few facings)", "empty": "empty shelf",
            "price_wrong": "price wrong (label)", "label_missing": "label missing"}
STATE_COLOURS = {"open": "red", "acknowledged": "orange", "done": "blue", "reopened": "violet", "verified": "green"}

tab_tasks, tab_admin = st.tabs(["Tasks", "Rules & webhooks"]) if me.may("manage_tasks") else (st.container(), None)


def evidence_pictures(task: dict):
    """(crop around the evidence or None when it has no boxes, the whole photo with gaps hatched, the product's
    facings boxed and, for a price task, the label read outlined with its price), or None when the photo cannot be
    shown."""
    evidence = task["evidence"]
    record = photo_record(engine, evidence.get("photo_id") or 0)
    loaded = photo_for_thumbnails(record["file"], record["width"]) if record else None
    if loaded is None:
        return None
    image, scale = loaded
    found = [Box(*b) for b in evidence.get("found", [])]
    gaps = [Box(*b) for b in evidence.get("gaps", [])]
    read = parse_price(f"{evidence['price_read']:.2f}") if evidence.get("price_read") is not None else None
    labels = [ShelfLabel(Box(*b), read, evidence.get("label_text") or "", 1.0, ()) for b in evidence.get("labels", [])]
    name = task["product"]
    overlay = draw_overlay(image, (record["width"], record["height"]), [(b, name, 0, 1.0) for b in found], gaps=gaps,
                           labels=labels)
    boxes = found + gaps + [label.box for label in labels]
    if not boxes:
        return None, overlay
    x1, y1 = min(b.x1 for b in boxes), min(b.y1 for b in boxes)
    x2, y2 = max(b.x2 for b in boxes), max(b.y2 for b in boxes)
    pad_x, pad_y = (x2 - x1) // 4 + 20, (y2 - y1) // 4 + 20
    crop = overlay.crop(tuple(round(v * scale) for v in (max(0, x1 - pad_x), max(0, y1 - pad_y),
                                                         min(record["width"], x2 + pad_x),
                                                         min(record["height"], y2 + pad_y))))
    return crop, overlay


def what_was_found(task: dict) -> str:
    """The finding in words, for the task picked: facings, the empty-shelf share, or the label against the plan."""
    evidence = task["evidence"]
    if "planned_price" in evidence:  # a price task
        read = "no label" if not evidence.get("labels") else f"label reads {evidence.get('label_text') or '?'}"
        return f"{task['finding']} ({read}; planned {evidence['planned_price']:.2f})"
    facings = f"{task['found_facings']} of {task['expected_facings']} planned facings found" \
        if task["expected_facings"] is not None else f"empty shelf {task['empty_share']:.0%}"
    return f"{task['finding']} ({facings})"


def move(task: dict, action: str) -> None:
    try:
        stored.move(engine, task["id"], action, by=me)
    except (stored.TaskError, access.Forbidden) as exc:
        st.session_state["task_outcome"] = ("error", str(exc))
    else:
        st.session_state["task_outcome"] = ("success", f"Task {task['id']} marked "
                                            f"{'acknowledged' if action == 'acknowledge' else 'done'}.")


# ---------------------------------------------------------------------------------------------------------------
with tab_tasks:
    st.caption("A planned product missing from a photo (or short of its facings, or — where the rules ask — with a "
               "wrong or missing shelf-edge label in a photo read with prices) opens a task for its store; the next "
               "photo of the aisle that shows it at plan (or priced right) verifies it, whoever touched it. A task "
               "marked done that the next photo does not bear out is reopened.")
    have_stores, have_aisles = stored.stores_and_aisles(engine)
    c1, c2, c3, c5, c4 = st.columns([2, 2, 3, 2, 2])
    default_stores = [me.store] if me.store in have_stores else []
    stores = c1.multiselect("Stores", have_stores, default=default_stores, key="tasks_stores",
                            format_func=dash, placeholder="All stores")
    aisles = c2.multiselect("Aisles", have_aisles, key="tasks_aisles", format_func=dash,
                            placeholder="All aisles")
    states = c3.multiselect("States", list(TASK_STATES), default=[s for s in TASK_STATES if s != VERIFIED],
                            key="tasks_states", placeholder="Every state")
    findings = c5.multiselect("Findings", list(TASK_FINDINGS), key="tasks_findings", format_func=FINDINGS.get,
                              placeholder="Every finding")
    older, newer = AGES[c4.selectbox("Age", list(AGES), key="tasks_age")]
    selection = stored.TaskFilter(stores, aisles, states, older, newer, findings)
    counts = stored.count_by_state(engine, stored.TaskFilter(stores, aisles, (), older, newer, findings))  # all states
    for column, state in zip(st.columns(len(TASK_STATES)), TASK_STATES):
        column.metric(state.capitalize(), f"{counts[state]:,}")
    total = sum(counts[state] for state in states or TASK_STATES)
    if outcome := st.session_state.pop("task_outcome", None):
        (st.success if outcome[0] == "success" else st.error)(ui.md_escape(outcome[1]))
    if not total:
        st.info("No tasks in this selection. Tasks open when a photo of an aisle with a planogram (Compliance → "
                "Planograms) is missing a planned product.", icon=":material/info:")
    else:
        pages = (total - 1) // PAGE_SIZE + 1
        number = st.number_input(f"Page (of {pages}, {PAGE_SIZE} a page, newest first)", 1, pages, 1,
                                 key="tasks_page") if pages > 1 else 1
        rows = stored.page(engine, selection, PAGE_SIZE, (number - 1) * PAGE_SIZE)
        table = pd.DataFrame(rows)
        ui.table(table[["id", "state", "store", "aisle", "product", "finding", "expected_facings", "found_facings",
                        "date", "opened_at", "acknowledged_by", "done_by", "verified_at"]],
                 hide_index=True, width="stretch", key="tasks_table", column_config={
                     "id": st.column_config.NumberColumn("Task", format="%d"), "state": "State", "store": "Store",
                     "aisle": "Aisle", "product": st.column_config.TextColumn("Product", width="medium"),
                     "finding": "Finding", "expected_facings": st.column_config.NumberColumn("Expected", format="%d"),
                     "found_facings": st.column_config.NumberColumn("Found", format="%d"),
                     "date": st.column_config.DateColumn("Photo date"),
                     "opened_at": st.column_config.DatetimeColumn("Opened", format="YYYY-MM-DD HH:mm"),
                     "acknowledged_by": "Acknowledged by", "done_by": "Done by",
                     "verified_at": st.column_config.DatetimeColumn("Verified", format="YYYY-MM-DD HH:mm")})

        st.subheader("Look closer")
        names = {r["id"]: f"#{r['id']} · {dash(r['store'])} · aisle {dash(r['aisle'])}"
                          f" · {r['product']} · {r['state']}" for r in rows}
        picked = st.selectbox("Task", list(names), format_func=names.get, key="tasks_pick")
        task = stored.get(engine, picked)
        where = [ui.md_escape(dash(task[k])) for k in ("store", "aisle")]
        st.markdown(f"**{ui.md_escape(task['product'])}** in store **{where[0]}**, aisle **{where[1]}**: "
                    f"{ui.md_escape(what_was_found(task))} on the photo of {task['date']} · "
                    f":{STATE_COLOURS[task['state']]}-badge[{task['state']}]")
        b1, b2, _ = st.columns([1, 1, 4])
        may_work = me.may("work_task", task["store"])
        b1.button("Acknowledge", key="task_ack", icon=":material/visibility:", on_click=move,
                  args=(task, "acknowledge"), disabled=not may_work or task["state"] not in ("open", "reopened"))
        b2.button("Done", key="task_done", type="primary", icon=":material/check:", on_click=move, args=(task, "done"),
                  disabled=not may_work or task["state"] not in ("open", "acknowledged", "reopened"))
        if not may_work:
            st.caption("Your role may not work on this store's tasks: store staff work on their own store's, "
                       "reviewers and admins on any.")
        pictures = evidence_pictures(task)
        if pictures is None:
            st.caption("The evidence photo cannot be shown (deleted, or its file cannot be read).")
        elif pictures[0] is None:
            st.image(pictures[1], caption=f"Photo {task['evidence']['photo_id']}: no empty gap or facing of the "
                                          "product to point at (gaps are found in auto mode)", width="stretch")
        else:
            p1, p2 = st.columns([1, 2])
            where = {None: "the gap (hatched) and the product's facings found",
                     0: "the product's facings: no shelf-edge label under them"}
            p1.image(pictures[0], caption="Where: " + where.get(
                None if "labels" not in task["evidence"] else len(task["evidence"]["labels"]),
                "the shelf-edge label read and the product's facings"), width="stretch")
            p2.image(pictures[1], caption=f"Photo {task['evidence']['photo_id']}", width="stretch")
        history = pd.DataFrame(outbox.events_of(engine, [task["id"]]))
        st.caption("History: " + " → ".join(f"{e.removeprefix('task.')} {at:%Y-%m-%d %H:%M}"
                                            for e, at in zip(history["event"], history["created_at"])))

    st.subheader("Time to fix")
    fix = evaluator.time_to_fix(engine, stored.TaskFilter(stores, aisles, (), older, newer, findings))
    if fix.empty:
        st.caption("No task in this selection has been verified yet: time to fix is measured from a task's opening "
                   "to the photo that verified it.")
    else:
        data, spec = evaluator.time_to_fix_spec(fix)
        st.vega_lite_chart(data, spec, width="stretch")
        st.caption(f"Median and 90th percentile of the hours from open to verified, per store, over "
                   f"{int(fix['verified'].sum()):,} verified task(s).")

# ---------------------------------------------------------------------------------------------------------------
if tab_admin is not None:
    with tab_admin:
        st.subheader("Rules")
        st.caption("Which findings open tasks, per store, aisle and product (`*`: any; the most specific rule wins; "
                   "without any rule a missing or under product opens one). `statuses`: any of missing, under, "
                   "price_wrong, label_missing (comma-separated; the last two from photos read with prices) or none; "
                   "`min_gap`: facings short of the plan; `empty_share_limit`: an empty-shelf share above it "
                   "opens a task for the aisle (auto mode photos); `quiet_hours`: 22:00-06:00 in `timezone`, when "
                   "photos open no task (they still verify).")
        rules = pd.DataFrame([evaluator.rule_row(r) for r in evaluator.rules(engine)], columns=stored.RULE_COLUMNS)
        edited = st.data_editor(rules.astype({"statuses": str, "quiet_hours": str, "timezone": str}),
                                num_rows="dynamic", hide_index=True, width="stretch", key="task_rules_editor",
                                column_config={"min_gap": st.column_config.NumberColumn(min_value=1, step=1),
                                               "empty_share_limit": st.column_config.NumberColumn(
                                                   min_value=0.0, max_value=0.99, step=0.05, format="percent")})
        if st.button("Save the rules", key="task_rules_save"):
            parsed, errors = evaluator.parse_rules(edited.to_dict("records"))
            if errors:
                st.error("Nothing saved; fix these rows first:\n\n" + "\n".join(f"- {ui.md_escape(e)}" for e in errors))
            else:
                stored.replace_rules(engine, [evaluator.rule_row(r) for r in parsed], by=me)
                st.success(f"{len(parsed)} rule(s) in force.")

        t1, t2 = st.columns([3, 1], vertical_alignment="bottom")
        counted = float(get_setting(engine, evaluator.THRESHOLD_SETTING) or 0.0)
        wanted = t1.number_input("Minimum confidence for a facing to count (as on the Compliance page's slider)",
                                 0.0, 1.0, counted, 0.05, format="%.2f", key="tasks_threshold",
                                 help="Regions below this top-1 probability are not counted as found, unless a "
                                      "reviewer corrected them.")
        if t2.button("Save", key="tasks_threshold_save", disabled=wanted == counted):
            change_setting(engine, evaluator.THRESHOLD_SETTING, f"{wanted:g}", by=me, action="manage_tasks")
            st.rerun()

        st.subheader("Webhooks")
        st.caption("Each task event is POSTed as JSON to every webhook, signed with its secret (X-Shelf-Signature), "
                   "retried until the receiver answers 2xx. README → Store tasks shows the format and how to point "
                   "it at a chat channel or a ticketing system.")
        hooks = outbox.list_webhooks(engine)
        if hooks:
            ui.table(pd.DataFrame([vars(h) for h in hooks]).drop(columns=["created_by"]), hide_index=True,
                     width="stretch", key="webhooks_table")
        w1, w2, w3 = st.columns([2, 4, 1], vertical_alignment="bottom")
        name = w1.text_input("Name", key="webhook_name", placeholder="store chat")
        url = w2.text_input("URL", key="webhook_url", placeholder="https://…")
        if w3.button("Add", key="webhook_add", disabled=not (name.strip() and url.strip())):
            try:
                st.session_state["webhook_secret"] = (name, outbox.add_webhook(engine, name, url, by=me))
            except outbox.WebhookError as exc:
                st.error(ui.md_escape(str(exc)))
            else:
                st.rerun()
        if shown := st.session_state.pop("webhook_secret", None):
            st.success(f"Webhook {ui.md_escape(shown[0])} added. Its signing secret, shown only now: give it to the "
                       "receiver, which checks X-Shelf-Signature with it.")
            st.code(shown[1], language=None)
        active = [h for h in hooks if h.active]
        if active:
            r1, r2 = st.columns([4, 1], vertical_alignment="bottom")
            gone = r1.selectbox("Remove a webhook", [h.id for h in active], key="webhook_pick",
                                format_func=lambda i: next(f"{h.name} ({h.url})" for h in active if h.id == i))
            if r2.button("Remove", key="webhook_remove"):
                outbox.remove_webhook(engine, gone, by=me)
                st.rerun()

        st.subheader("Outbox")
        waiting = st.toggle("Only what is still to be delivered", key="outbox_pending")
        rows = outbox.outbox_rows(engine, waiting, 200)
        if rows:
            ui.table(pd.DataFrame(rows), hide_index=True, width="stretch", key="outbox_table")
        else:
            st.caption("Nothing " + ("waiting." if waiting else "in the outbox yet."))
        st.caption(f"{stored.pending_checks(engine)} photo(s) waiting for task evaluation · "
                   f"updated {dt.datetime.now():%H:%M:%S}")
