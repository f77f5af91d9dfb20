"""Review: doubtful regions first; correct their labels; corrections count in tallies and exports.

Picks are kept per region id across pages and filter changes (never per row number), listed until saved or
discarded, and the editor starts clean after a save."""
import streamlit as st

from shelf.analytics import report
from shelf.analytics.prices import labels_to_review
from shelf.analytics.review import LABEL_CHOICES, corrections_from_edits, label_choice
from shelf.serving import ui
from shelf.storage import store
from shelf.storage.prices import correct_prices

PAGE_SIZE = 25

ui.use_router()
st.title("Review")
st.caption("The regions the model is least sure of come first. Pick the right label under **Correct to** for any "
           "row (type to search the 1 000 ImageNet classes), then save: the corrected label counts in Tallies and "
           "exports from then on, whatever the confidence threshold, and the model's own prediction is kept beside "
           "it.")
engine = ui.store()
ui.stored_results_banner()
facets = ui.facets_or_stop()

scope = ui.scope_filters(facets, "review")
c1, c2, c3 = st.columns([3, 2, 2])
band = c1.slider("Model confidence", 0.0, 1.0, (0.0, 1.0), 0.05, format="%.2f", key="review_band")
include_reviewed = c2.toggle("Show reviewed regions too", key="review_include")
may_correct = ui.shows("correct")
who = ui.acting_identity(c3, "Your name (saved with each correction)", "reviewer") if may_correct else None

review_filter = report.ReviewFilter(scope, band, include_reviewed)
total = report.review_count(engine, review_filter)
pages = max(1, -(-total // PAGE_SIZE))
if st.session_state.get("review_filter") != review_filter:  # other regions: their list starts at page 1
    st.session_state["review_filter"] = review_filter
    st.session_state["review_page"] = 1
st.session_state["review_page"] = min(st.session_state.get("review_page", 1), pages)  # fewer pages after a save
page = st.columns(4)[0].number_input(f"Page (of {pages}, {PAGE_SIZE} per page)", 1, pages, key="review_page") \
    if pages > 1 else 1
shown = report.review_rows(engine, review_filter, int(page), PAGE_SIZE)
PENDING = "review_pending"


def save(changes: dict[int, tuple[int, str]], keep=()) -> None:
    """Store corrections; the picks not in `keep` are done, and the editor starts clean."""
    if not changes:
        st.info("That pick is the label the region already counts as; nothing to save.")
        return
    if who is None:
        st.error("Type your name first: every correction records who made it.")
        return
    saved = store.add_corrections(engine, changes, who)
    kept = {k: v for k, v in st.session_state.get(PENDING, {}).items() if k in keep}
    ui.clear_edits(PENDING)
    st.session_state[PENDING] = kept
    st.session_state["review_message"] = f"Saved {saved} correction(s). Tallies now count them."
    st.rerun()


st.caption(f"{total} region(s) to review, least confident first · page {page} of {pages}")
pending: dict[int, str] = st.session_state.get(PENDING, {})
if shown.empty:
    st.success("Nothing left to review with these filters.", icon=":material/task_alt:")
else:
    table = shown.assign(
        crop=ui.thumbnails(shown),
        # the region's number first, the column beside the picks: "#12" is what to find on the photo, in sight at
        # any width (a long photo name is cut at its end, not its number)
        where="#" + (shown["position"] + 1).astype(str) + " · " + shown["photo"] + " (" + shown["sha256"].str[:6]
        + ")",
        counts_as=[label_choice(i) for i in shown["class_index"]],
        correct_to=None,
    )[["region_id", "crop", "counts_as", "probability", "correct_to", "where", "sku", "top_k", "category", "store",
       "aisle", "captured_on"]]
    pending = ui.keyed_editor(
        table, ids="region_id", column="correct_to", state=PENDING, hide_index=True, width="stretch",
        row_height=100, height="content", placeholder="",
        disabled=[c for c in table.columns if c != "correct_to"] if may_correct else True,
        column_order=[c for c in table.columns if c != "region_id"],
        column_config={
            "crop": st.column_config.ImageColumn("Crop", width="small"),  # fixed widths: columns stay put
            "where": st.column_config.TextColumn("Region · photo", width="medium", help=(
                "The region's number on its photo (as on the overlay), the photo's name and the start of its "
                "content hash (two photos may share a name)")),
            "store": "Store", "aisle": "Aisle", "captured_on": st.column_config.DateColumn("Date"),
            "top_k": st.column_config.TextColumn("Model's top-k", width="medium"),
            "probability": st.column_config.ProgressColumn("Confidence", format="percent", min_value=0,
                                                           max_value=1, width="small"),
            "category": "Category", "sku": "SKU",
            "counts_as": st.column_config.TextColumn("Counts as", width="medium"),
            "correct_to": st.column_config.SelectboxColumn("Correct to", options=LABEL_CHOICES, width="medium",
                                                           help="Pick the right label; leave empty to keep it"),
        })
    if may_correct:
        with st.expander("Correct one region (keyboard-friendly)"):
            q1, q2, q3 = st.columns([3, 3, 1])
            names = dict(zip(shown["region_id"].astype(int), table["where"] + " — " + table["counts_as"]))
            one = q1.selectbox("Region", list(names), key="quick_region", format_func=names.get)
            to = q2.selectbox("Correct to", LABEL_CHOICES, index=None, key="quick_label", placeholder="Type a label")
            if q3.button("Save", key="quick_save", disabled=to is None):
                save(corrections_from_edits(shown[shown["region_id"] == one], [to]), keep=pending.keys() - {one})

current = report.region_labels(engine, list(pending))
changes = corrections_from_edits(current, [pending[int(r)] for r in current["region_id"]])
elsewhere = [r for r in changes if r not in set(shown["region_id"].astype(int))]
if elsewhere:
    st.warning(f"{len(elsewhere)} pick(s) are for regions not on this page (another page or filter); they are "
               "kept and saved with the others, or drop them with *Discard picks*.", icon=":material/info:")
if changes:
    with st.expander(f"Picks not saved yet ({len(changes)})"):
        for row in current[current["region_id"].isin(changes)].itertuples():
            st.text(f"#{row.position + 1} · {row.photo}: {label_choice(row.class_index)} → "
                    f"{label_choice(changes[int(row.region_id)][0])}")
save_col, discard_col = st.columns([2, 5])
if may_correct and save_col.button(f"Save {len(changes)} correction(s)", type="primary", disabled=not changes,
                                   key="save_corrections"):
    save(changes)
if may_correct and pending and discard_col.button("Discard picks", key="discard_picks"):
    ui.clear_edits(PENDING)
    st.rerun()
if message := st.session_state.pop("review_message", None):
    st.success(message, icon=":material/task_alt:")

st.divider()
st.subheader("Shelf-edge prices")
labels = labels_to_review(engine, scope, limit=PAGE_SIZE)
if labels.empty:
    st.caption("No shelf-edge price labels in this selection: recognize photos with *Read shelf-edge prices* on.")
else:
    st.caption("Labels read with *Read shelf-edge prices*, unreadable ones first, then the least confident. Type the "
               "price a label really shows under **Correct price** (1.99, 1,99 or 2 for 3.00) and save: compliance "
               "and exports use it from then on; the OCR's reading is kept beside it.")
    prices_table = labels.assign(crop=ui.thumbnails(labels), correct_price="",
                                 where=labels["photo"] + " (" + labels["sha256"].str[:6] + ")")[
        ["label_id", "crop", "shown", "text", "confidence", "corrected", "correct_price", "where", "store", "aisle"]]
    edited = st.data_editor(
        prices_table, hide_index=True, width="stretch", row_height=60, key="price_editor",
        disabled=[c for c in prices_table.columns if c != "correct_price"] if may_correct else True,
        column_order=[c for c in prices_table.columns if c != "label_id"],
        column_config={"crop": st.column_config.ImageColumn("Label", width="small"),
                       "shown": "Price", "text": st.column_config.TextColumn("OCR read", width="medium"),
                       "confidence": st.column_config.ProgressColumn("OCR confidence", format="percent",
                                                                     min_value=0, max_value=1, width="small"),
                       "corrected": "Corrected", "correct_price": st.column_config.TextColumn("Correct price"),
                       "where": "Photo", "store": "Store", "aisle": "Aisle"})
    typed = {int(i): t for i, t in zip(edited["label_id"], edited["correct_price"]) if isinstance(t, str) and t.strip()}
    if may_correct and st.button(f"Save {len(typed)} price correction(s)", disabled=not typed, key="save_prices"):
        try:
            if who is None:
                raise ValueError("type your name first: every correction records who made it")
            st.session_state["price_message"] = f"Saved {correct_prices(engine, typed, who)} price correction(s)."
            st.session_state.pop("price_editor", None)
            st.rerun()
        except ValueError as exc:
            st.error(f"Nothing saved: {ui.md_escape(str(exc))}")
    if message := st.session_state.pop("price_message", None):
        st.success(message, icon=":material/task_alt:")
