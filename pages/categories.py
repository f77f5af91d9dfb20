"""Categories: which retail category each ImageNet class counts under. Edits persist in the store."""
import pandas as pd
import streamlit as st

from shelf import ui
from shelf.categories import RETAIL_CATEGORIES, category_map, default_map, save_category_edits
from shelf.model import CATEGORIES as IMAGENET_LABELS

ui.use_router()
st.title("Categories")
st.caption("Tallies roll ImageNet labels up into these retail categories. The map is keyed by class index, "
           "never by name. Edits are saved in the store for everyone.")
engine = ui.store()
current = category_map(engine)
shipped = default_map()

c1, c2, c3 = st.columns([3, 3, 2])
search = c1.text_input("Find a class", key="category_search", placeholder="e.g. bottle, 737")
shown_categories = c2.multiselect("Only these categories", RETAIL_CATEGORIES, key="category_filter",
                                  placeholder="All categories")
analyst = c3.text_input("Your name", key="category_analyst", max_chars=100)

table = pd.DataFrame({"class_index": range(len(IMAGENET_LABELS)), "label": IMAGENET_LABELS,
                      "category": [current[i] for i in range(len(IMAGENET_LABELS))],
                      "edited": [current[i] != shipped[i] for i in range(len(IMAGENET_LABELS))]})
if search.strip():
    needle = search.strip().lower()
    table = table[table["label"].str.lower().str.contains(needle, regex=False)
                  | (table["class_index"].astype(str) == needle)]
if shown_categories:
    table = table[table["category"].isin(shown_categories)]
table = table.reset_index(drop=True)
st.caption(f"{len(table)} class(es) · {sum(current[i] != shipped[i] for i in shipped)} edited from the shipped map")
edited = st.data_editor(
    table, key="category_editor", hide_index=True, width="stretch", disabled=["class_index", "label", "edited"],
    column_config={"class_index": st.column_config.NumberColumn("Class", format="%d"), "label": "ImageNet label",
                   "category": st.column_config.SelectboxColumn("Retail category", options=RETAIL_CATEGORIES,
                                                                required=True),
                   "edited": st.column_config.CheckboxColumn("Edited")})
edits = {int(i): c for i, c, before in zip(edited["class_index"], edited["category"], table["category"])
         if c != before}
if st.button(f"Save {len(edits)} change(s)", type="primary", disabled=not edits, key="save_categories"):
    save_category_edits(engine, edits, analyst)
    st.session_state.pop("category_editor", None)
    st.rerun()
