"""Tallies: facings, share of shelf and confidence by label / category / store / aisle / date; charts; exports.
Everything is computed in the database (shelf.analytics.report); this page only lays it out."""
import dataclasses
import datetime as dt

import streamlit as st

from shelf.analytics import charts, export, report
from shelf.analytics.tally import GROUPINGS
from shelf.serving import ui

ui.use_router()
st.title("Tallies")
engine = ui.store()
ui.stored_results_banner()
facets = ui.facets_or_stop()

scope = ui.scope_filters(facets, "tallies")
c1, c2 = st.columns([1, 1])
by = c1.multiselect("Group by", list(GROUPINGS), default=["label"], key="group_by",
                    help="Share of shelf is computed within each store / aisle / date you group by together with "
                         "a label, category, SKU or brand; grouped by store, aisle or date alone, it is each "
                         "row's share of the selection.") or ["label"]
threshold = c2.slider("Minimum confidence", 0.0, 1.0, 0.0, 0.05, format="%.2f", key="min_confidence",
                      help="Regions whose top-1 probability is lower are not counted as facings, unless a "
                           "reviewer corrected them.")

# on_change="rerun": the Trend tab is computed only while it is open (it reads every store and date: 0.3 s at 1 M
# regions on SQLite, so not on every rerun); the other tabs are drawn on every run, as before.
tab_facings, tab_share, tab_confidence, tab_trend, tab_empty = st.tabs(
    ["Facings", "Share of shelf by store", "Confidence", "Trend", "Empty shelf"], key="tallies_tab",
    on_change="rerun")
share = report.share_by_store(engine, threshold, scope)
charts_key = st.session_state.get("tallies_charts", 0)  # a new number clears the charts' selections
with tab_share:
    share_event = st.altair_chart(charts.share_of_shelf_chart(share), width="stretch", on_select="rerun",
                                  key=f"share_chart_{charts_key}")
with tab_confidence:
    brush_event = st.altair_chart(charts.confidence_histogram(report.confidence_histogram(engine, scope), threshold),
                                  width="stretch", on_select="rerun", key=f"confidence_chart_{charts_key}")


def show_trend() -> None:
    """Facings per photo over photo dates: a line per store, or one store's categories as stacked bands."""
    EACH_STORE = ""
    t1, t2 = st.columns([2, 3])
    trend_store = t1.selectbox("Trend of", [EACH_STORE] + list(scope.stores or [s for s in facets.stores if s]),
                               key="trend_store", format_func=lambda s: "every store, one line each"
                               if s == EACH_STORE else f"store {s}, by category")
    as_share = trend_store != EACH_STORE and t2.segmented_control(
        "Plot", ["Facings per photo", "Share of shelf"], default="Facings per photo",
        key="trend_measure") == "Share of shelf"
    lines = "store" if trend_store == EACH_STORE else "category"
    trend = report.trend(engine, threshold, scope if lines == "store" else
                         dataclasses.replace(scope, stores=[trend_store]), lines) if facets.first_date else None
    if trend is None or trend.empty:
        st.caption("No photo in the selection has a date.")
    elif lines == "store":
        st.altair_chart(charts.store_trend_chart(trend, "per_photo", "Facings per photo"), width="stretch")
        st.caption("**Facings per photo**: counted facings ÷ photos taken, per store and photo date, so a day with "
                   "more photos does not look like fuller shelves. "
                   + (f"{trend['store'].nunique()} stores: one row each; pick up to {charts.MAX_LINES} under "
                      "*Stores* for lines. " if trend["store"].nunique() > charts.MAX_LINES else "")
                   + "Pick a store under *Trend of* to see its categories.")
    else:
        st.altair_chart(charts.category_trend_chart(trend, as_share), width="stretch")
        st.caption(f"Store {ui.md_escape(trend_store)}, one band per category: "
                   + ("each category's **share** of the store's counted facings that day." if as_share else
                      "**facings per photo** (counted facings ÷ photos taken that day); the bands add up to the "
                      "store's facings per photo."))


if tab_trend.open:
    with tab_trend:
        show_trend()

with tab_empty:
    empty = report.empty_shelf(engine, scope, ["store", "aisle", "date"])
    if empty.empty:
        st.caption("No photo in the selection was recognized in auto mode, the mode that finds empty gaps.")
    else:
        ui.table(empty.assign(**{c: empty[c].map(charts.blank_as_dash) for c in ("store", "aisle")})
                 .sort_values("empty_share", ascending=False)[["store", "aisle", "captured_on", "empty_share"]],
                 hide_index=True, width="stretch", key="empty_shelf_table", column_config={
                     "store": "Store", "aisle": "Aisle", "captured_on": st.column_config.DateColumn("Date"),
                     "empty_share": st.column_config.ProgressColumn("Empty shelf", format="percent", min_value=0,
                                                                    max_value=1)})

picked = charts.picked_categories(share_event.selection if share_event else {})
brushed = charts.brushed_range(brush_event.selection if brush_event else {})
selected = scope
if picked:
    real = [c for p in picked for c in (share.attrs.get("folded", []) if p == "Other" else [p])]
    selected = dataclasses.replace(selected, categories=[c for c in real if not scope.categories
                                                         or c in scope.categories] or ["(none)"])
if brushed:
    selected = dataclasses.replace(selected, confidence=brushed)
table = report.tally_table(engine, by, threshold, selected)

with tab_facings:
    if not table.empty:
        st.altair_chart(charts.facings_bar_chart(table, by), width="stretch")

totals = report.totals(engine, threshold, selected)
m1, m2, m3, m4, m5 = st.columns(5)
m1.metric("Photos", f"{report.photo_count(engine, selected):,}", help="Photos of the selected stores, aisles and "
          "dates.")
m2.metric("Facings", f"{totals.facings:,}", help="Regions counted as facings: confidence at least the minimum, or "
          "corrected by a reviewer.")
m3.metric("Below threshold", f"{totals.below_threshold:,}", help="Regions under the minimum confidence: not counted.")
m4.metric("Corrected", f"{totals.corrected:,}", help="Regions a reviewer gave a label; they always count.")
whole = report.empty_shelf(engine, scope)
m5.metric("Empty shelf", **report.empty_share_figure(whole["empty_share"].iloc[0] if not whole.empty else None),
          help="Width of the empty gaps as a share of the shelf width, in photos recognized in auto mode (the "
               "mode that finds gaps; other photos are not measured). Stores, aisles and dates apply; categories "
               "do not (a gap has none).")
notes = []
if picked:
    notes.append(f"categories picked in the chart legend: {ui.md_escape(', '.join(picked))}")
if brushed:
    notes.append(f"confidence {brushed[0]:.0%}–{brushed[1]:.0%} selected on the histogram")
if totals.corrected:
    notes.append(f"{totals.corrected} region(s) use a reviewer's label")
if notes:
    note_col, clear_col = st.columns([5, 1])
    note_col.caption("Table: " + "; ".join(notes) + ".")
    if (picked or brushed) and clear_col.button("Clear chart selections", key="clear_chart_selections"):
        st.session_state["tallies_charts"] = charts_key + 1
        st.rerun()

if table.empty:
    st.warning("No region passes these filters. Widen the filters or clear the chart selections.")
    st.stop()
shown = table.assign(**{c: table[c].map(charts.blank_as_dash) for c in ("store", "aisle") if c in table})
CONFIDENCE_HELP = ("The model's top-1 confidence, over the regions it labelled. A corrected region counts under the "
                   "reviewer's label, which the model gave no confidence for: it is left out (— when every region "
                   "of the row was corrected).")
ui.table(
    shown, hide_index=True, width="stretch", placeholder="—",  # no date; no confidence (corrected regions only)
    column_config={
        "class_index": st.column_config.NumberColumn("Class", format="%d", help="ImageNet class index"),
        "label": st.column_config.TextColumn("Label", width="medium"),
        "category": "Category", "store": "Store", "aisle": "Aisle", "sku": "SKU", "brand": "Brand",
        "captured_on": st.column_config.DateColumn("Date"),
        "facings": st.column_config.NumberColumn("Facings", format="%d"),
        "share": st.column_config.ProgressColumn("Share of shelf", format="percent", min_value=0, max_value=1),
        "mean_confidence": st.column_config.NumberColumn("Mean confidence", format="percent", help=CONFIDENCE_HELP),
        "min_confidence": st.column_config.NumberColumn("Min confidence", format="percent", help=CONFIDENCE_HELP),
        "below_threshold": st.column_config.NumberColumn("Below threshold", format="%d"),
        "corrected": st.column_config.NumberColumn("Corrected", format="%d"),
    })
stamp = f"{dt.date.today():%Y%m%d}"
st.download_button("Download this table (CSV)", export.to_csv_bytes(table), file_name=f"shelf-tallies-{stamp}.csv",
                   mime="text/csv", icon=":material/download:", key="download_tallies")

with st.expander("Export the selected regions"):
    st.caption(f"{totals.regions} region(s) with the filters above; the detections CSV has a `counted` column "
               f"(counted as a facing at the minimum confidence {threshold:.2f}).")
    ui.region_exports(engine, selected, threshold, totals.regions, {"group_by": by, "threshold": threshold}, stamp)
