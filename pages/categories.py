"""Categories: which retail category each ImageNet class counts under. Edits persist in the store.

Pending edits are kept by class index across searches and filters (never by row number), listed until saved or
discarded."""
import pandas as pd
import streamlit as st

from shelf.analytics.categories import (
    RETAIL_CATEGORIES,
    category_map,
    default_map,
    save_category_edits,
)
from shelf.labels import IMAGENET_CLASSES
from shelf.serving import ui

PENDING = "category_pending"

ui.use_router()
st.title("Categories")
st.caption("Tallies roll ImageNet labels up into these retail categories. The map is keyed by class index, "
           "never by name. Edits are saved in the store for everyone.")
engine = ui.store()
current = category_map(engine)
shipped = default_map()
if message := st.session_state.pop("category_message", None):
    st.success(message, icon=":material/task_alt:")

c1, c2, c3 = st.columns([3, 3, 2])
search = c1.text_input("Find a class", key="category_search", placeholder="e.g. bottle, 737")
shown_categories = c2.multiselect("Only these categories", RETAIL_CATEGORIES, key="category_filter",
                                  placeholder="All categories")
may_edit = ui.shows("edit_categories")
who = ui.acting_identity(c3, "Your name (saved with each change)", "category_analyst") if may_edit else None

table = pd.DataFrame({"class_index": range(len(IMAGENET_CLASSES)), "label": IMAGENET_CLASSES,
                      "category": [current[i] for i in range(len(IMAGENET_CLASSES))],
                      "edited": [current[i] != shipped[i] for i in range(len(IMAGENET_CLASSES))]})
if search.strip():
    needle = search.strip().lower()
    table = table[table["label"].str.lower().str.contains(needle, regex=False)
                  | (table["class_index"].astype(str) == needle)]
if shown_categories:
    table = table[table["category"].isin(shown_categories)]
table = table.reset_index(drop=True)
st.caption(f"{len(table)} class(es) shown · {sum(current[i] != shipped[i] for i in shipped)} edited from the "
           "shipped map")
edits = ui.keyed_editor(
    table, ids="class_index", column="category", state=PENDING, hide_index=True, width="content",
    disabled=["class_index", "label", "edited"] if may_edit else True,
    column_config={"class_index": st.column_config.NumberColumn("Class", format="%d", width="small"),
                   "label": st.column_config.TextColumn("ImageNet label", width="medium"),
                   "category": st.column_config.SelectboxColumn("Retail category", options=RETAIL_CATEGORIES,
                                                                required=True, width="medium"),
                   "edited": st.column_config.CheckboxColumn("Edited", help="Differs from the shipped map",
                                                             width="small")})
elsewhere = sorted(set(edits) - set(table["class_index"]))
if elsewhere:
    st.warning(f"{len(elsewhere)} change(s) to classes not shown with this search or filter are kept: "
               + ", ".join(f"{IMAGENET_CLASSES[i]} ({i}) → {edits[i]}" for i in elsewhere[:5])
               + (" …" if len(elsewhere) > 5 else "") + ". Save or discard them with the others.",
               icon=":material/info:")
save_col, discard_col = st.columns([2, 5])
if may_edit and save_col.button(f"Save {len(edits)} change(s)", type="primary", disabled=not edits,
                                key="save_categories"):
    if who is None:
        st.error("Type your name first: every change records who made it.")
    else:
        save_category_edits(engine, edits, who)
        ui.clear_edits(PENDING)
        st.session_state["category_message"] = (f"Saved {len(edits)} change(s). Tallies, charts and exports use "
                                                "them from now on.")
        st.rerun()
if may_edit and edits and discard_col.button("Discard changes", key="discard_categories"):
    ui.clear_edits(PENDING)
    st.rerun()
