"""Tallies: facings, share of shelf and confidence by label / category / store / aisle / date; charts; exports."""
import datetime as dt

import streamlit as st

from shelf import charts, export, ui
from shelf.store import runs_frame
from shelf.tally import GROUPINGS, counted, filter_detections, tally

ui.use_router()
st.title("Tallies")
engine = ui.store()
detections = ui.stored_detections_or_stop()

scope = ui.scope_filters(detections, "tallies")
c1, c2 = st.columns([1, 1])
by = c1.multiselect("Group by", list(GROUPINGS), default=["label"], key="group_by",
                    help="Share of shelf is computed within each store / aisle / date you group by.") or ["label"]
threshold = c2.slider("Minimum confidence", 0.0, 1.0, 0.0, 0.05, format="%.2f", key="min_confidence",
                      help="Regions whose top-1 probability is lower are not counted as facings, unless a "
                           "reviewer corrected them.")
selected = filter_detections(detections, scope)

tab_facings, tab_share, tab_confidence, tab_trend = st.tabs(["Facings", "Share of shelf by store", "Confidence",
                                                            "Trend"])
with tab_share:
    share_event = st.altair_chart(charts.share_of_shelf_chart(selected, threshold), width="stretch",
                                  on_select="rerun", key="share_chart")
with tab_confidence:
    brush_event = st.altair_chart(charts.confidence_histogram(selected, threshold), width="stretch",
                                  on_select="rerun", key="confidence_chart")
with tab_trend:
    if selected["captured_on"].notna().any():
        st.altair_chart(charts.trend_chart(selected, threshold), width="stretch")
    else:
        st.caption("No photo in the selection has a date.")

picked = charts.picked_categories(share_event.selection if share_event else {})
brushed = charts.brushed_range(brush_event.selection if brush_event else {})
if picked:
    selected = selected[selected["category"].isin(picked)]
if brushed:
    selected = selected[selected["probability"].between(*brushed)]
table = tally(selected, by, threshold)

with tab_facings:
    if not table.empty:
        st.altair_chart(charts.facings_bar_chart(table, by), width="stretch")

is_counted = counted(selected, threshold)
m1, m2, m3, m4 = st.columns(4)
m1.metric("Photos", selected["photo_id"].nunique())
m2.metric("Facings counted", int(is_counted.sum()))
m3.metric("Below threshold (not counted)", int((~is_counted).sum()))
m4.metric("Corrected by reviewers", int(selected["corrected"].sum()))
notes = []
if picked:
    notes.append(f"categories picked in the chart legend: {', '.join(picked)}")
if brushed:
    notes.append(f"confidence {brushed[0]:.0%}–{brushed[1]:.0%} selected on the histogram")
if int(selected["corrected"].sum()):
    notes.append(f"{int(selected['corrected'].sum())} region(s) use a reviewer's label")
if notes:
    st.caption("Table: " + "; ".join(notes) + ".")

if table.empty:
    st.warning("No region passes these filters. Widen the filters or clear the chart selections.")
    st.stop()
ui.table(
    table, hide_index=True, width="stretch",
    column_config={
        "class_index": st.column_config.NumberColumn("Class", format="%d", help="ImageNet class index"),
        "label": st.column_config.TextColumn("Label", width="medium"),
        "category": "Category", "store": "Store", "aisle": "Aisle",
        "captured_on": st.column_config.DateColumn("Date"),
        "facings": st.column_config.NumberColumn("Facings", format="%d"),
        "share": st.column_config.ProgressColumn("Share of shelf", format="percent", min_value=0, max_value=1),
        "mean_confidence": st.column_config.NumberColumn("Mean confidence", format="percent"),
        "min_confidence": st.column_config.NumberColumn("Min confidence", format="percent"),
        "below_threshold": st.column_config.NumberColumn("Below threshold", format="%d"),
        "corrected": st.column_config.NumberColumn("Corrected", format="%d"),
    })
stamp = f"{dt.date.today():%Y%m%d}"
st.download_button("Download this table (CSV)", export.to_csv_bytes(table), file_name=f"shelf-tallies-{stamp}.csv",
                   mime="text/csv", icon=":material/download:", key="download_tallies")

with st.expander("Export the selected regions"):
    st.caption(f"{len(selected)} region(s) of {selected['photo_id'].nunique()} photo(s), with the filters above.")
    e1, e2, e3, e4 = st.columns(4)
    e1.download_button("Detections (CSV)", export.detections_csv(selected), file_name=f"shelf-detections-{stamp}.csv",
                       mime="text/csv", key="download_detections")
    e2.download_button("COCO (JSON)", lambda: export.coco_json(selected), file_name=f"shelf-coco-{stamp}.json",
                       mime="application/json", key="download_coco", on_click="ignore")
    e3.download_button("SKU-110K (CSV)", lambda: export.sku110k_csv(selected),
                       file_name=f"shelf-sku110k-{stamp}.csv", mime="text/csv", key="download_sku110k",
                       on_click="ignore")
    e4.download_button("Manifest (JSON)", lambda: export.manifest_json(selected, runs_frame(engine),
                                                                        {"group_by": by, "threshold": threshold}),
                       file_name=f"shelf-manifest-{stamp}.json", mime="application/json", key="download_manifest",
                       on_click="ignore")
