"""Tallies: counts per label with confidence, filtered; a chart; the same table as CSV."""
import datetime as dt

import streamlit as st

from shelf import ui
from shelf.charts import tally_bar_chart
from shelf.export import to_csv_bytes
from shelf.store import predictions_frame
from shelf.tally import TallyFilter, filter_detections, tally_by_label

ui.use_router()
st.title("Tallies")
top1 = predictions_frame(ui.store(), top1_only=True)
if top1.empty:
    st.info("Nothing is stored yet. Recognize some photos first.", icon=":material/info:")
    st.page_link("pages/recognize.py", label="Go to Recognize", icon=":material/photo_camera:")
    st.stop()

c1, c2, c3, c4 = st.columns([2, 2, 2, 2])
min_confidence = c1.slider("Minimum confidence", 0.0, 1.0, 0.0, 0.05, format="%.2f", key="min_confidence",
                           help="Only regions whose top-1 probability reaches this are counted.")
stores = c2.multiselect("Stores", sorted(set(top1["store"]) - {""}) or [], key="stores", placeholder="All stores")
aisles = c3.multiselect("Aisles", sorted(set(top1["aisle"]) - {""}) or [], key="aisles", placeholder="All aisles")
dates = sorted(d for d in top1["captured_on"].dropna().unique())
date_range = c4.date_input("Dates", value=(dates[0], dates[-1]), key="dates", format="YYYY-MM-DD") if dates \
    else ()
date_from, date_to = (tuple(date_range) + (None, None))[:2] if date_range else (None, None)
if date_from is not None and date_to is None:
    date_to = date_from  # a half-picked range means that one day

selection = filter_detections(top1, TallyFilter(min_confidence, stores, aisles, date_from, date_to))
table = tally_by_label(selection)

m1, m2, m3, m4 = st.columns(4)
m1.metric("Photos", selection["photo_id"].nunique())
m2.metric("Regions counted", len(selection))
m3.metric("Labels", len(table))
m4.metric("Below threshold (left out)", int((top1["probability"] < min_confidence).sum()))

if table.empty:
    st.warning("No region passes these filters. Lower the minimum confidence or widen the filters.")
    st.stop()

st.altair_chart(tally_bar_chart(table), width="stretch")
st.dataframe(
    table, hide_index=True, width="stretch",
    column_config={
        "class_index": st.column_config.NumberColumn("Class", format="%d", help="ImageNet class index"),
        "label": st.column_config.TextColumn("Label", width="medium"),
        "count": st.column_config.NumberColumn("Count", format="%d"),
        "share": st.column_config.ProgressColumn("Share", format="percent", min_value=0, max_value=1),
        "mean_confidence": st.column_config.NumberColumn("Mean confidence", format="percent"),
        "min_confidence": st.column_config.NumberColumn("Min confidence", format="percent"),
    })
st.download_button("Download this table (CSV)", to_csv_bytes(table),
                   file_name=f"shelf-tallies-{dt.date.today():%Y%m%d}.csv", mime="text/csv",
                   icon=":material/download:", key="download_tallies")
