"""Review: doubtful regions first; correct their labels; corrections count in tallies and exports."""
import streamlit as st

from shelf import store, ui
from shelf.review import LABEL_CHOICES, ReviewFilter, corrections_from_edits, label_choice, review_queue

PAGE_SIZE = 25

ui.use_router()
st.title("Review")
engine = ui.store()
detections = ui.stored_detections_or_stop()

scope = ui.scope_filters(detections, "review")
c1, c2, c3 = st.columns([3, 2, 2])
band = c1.slider("Model confidence", 0.0, 1.0, (0.0, 1.0), 0.05, format="%.2f", key="review_band")
include_reviewed = c2.toggle("Show reviewed regions too", key="review_include")
reviewer = c3.text_input("Your name (saved with each correction)", key="reviewer", max_chars=100)

queue = review_queue(detections, ReviewFilter(scope, band, include_reviewed))
corrected_total = int(detections["corrected"].sum())
st.caption(f"{len(queue)} region(s) to review, least confident first · {corrected_total} corrected so far")
if queue.empty:
    st.success("Nothing left to review with these filters.", icon=":material/task_alt:")
    st.stop()

pages = max(1, -(-len(queue) // PAGE_SIZE))
page = st.columns(4)[0].number_input(f"Page (of {pages}, {PAGE_SIZE} per page)", 1, pages, 1, key="review_page") \
    if pages > 1 else 1
shown = queue.iloc[(page - 1) * PAGE_SIZE: page * PAGE_SIZE].reset_index(drop=True)
table = shown.assign(
    crop=ui.thumbnails(shown),
    where=shown["photo"] + " · #" + (shown["position"] + 1).astype(str),
    counts_as=[label_choice(i) for i in shown["class_index"]],
    correct_to=None,
)[["crop", "counts_as", "probability", "correct_to", "sku", "top_k", "category", "where", "store",
   "aisle", "captured_on"]]
edited = ui.table(
    table, editable=True, key="review_editor", hide_index=True, width="stretch", row_height=100,
    disabled=[c for c in table.columns if c != "correct_to"],
    column_config={
        "crop": st.column_config.ImageColumn("Region", width="small"),
        "where": st.column_config.TextColumn("Photo · region"),
        "store": "Store", "aisle": "Aisle", "captured_on": st.column_config.DateColumn("Date"),
        "top_k": st.column_config.TextColumn("Model's top-k", width="medium"),
        "probability": st.column_config.ProgressColumn("Confidence", format="percent", min_value=0, max_value=1),
        "category": "Category", "sku": "SKU",
        "counts_as": st.column_config.TextColumn("Counts as"),
        "correct_to": st.column_config.SelectboxColumn("Correct to", options=LABEL_CHOICES, width="medium"),
    })
with st.expander("Correct one region (keyboard-friendly)"):
    q1, q2, q3 = st.columns([3, 3, 1])
    one = q1.selectbox("Region", range(len(shown)), key="quick_region",
                       format_func=lambda i: f"{shown['photo'][i]} #{shown['position'][i] + 1} — "
                                             f"{label_choice(int(shown['class_index'][i]))}")
    to = q2.selectbox("Correct to", LABEL_CHOICES, index=None, key="quick_label", placeholder="Type a label")
    quick = q3.button("Save", key="quick_save", disabled=to is None)
changes = corrections_from_edits(shown, edited["correct_to"].tolist())
if quick:
    changes = corrections_from_edits(shown.iloc[[one]], [to])
if st.button(f"Save {len(changes)} correction(s)", type="primary", disabled=not changes, key="save_corrections") \
        or (quick and changes):
    if not reviewer.strip():
        st.error("Type your name first: every correction records who made it.")
    else:
        saved = store.add_corrections(engine, changes, reviewer)
        st.session_state.pop("review_editor", None)
        st.session_state["review_message"] = f"Saved {saved} correction(s). Tallies now count them."
        st.rerun()
if message := st.session_state.pop("review_message", None):
    st.success(message, icon=":material/task_alt:")
