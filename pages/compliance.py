"""Compliance: is each store's shelf as planned? Planogram compliance, on-shelf availability and empty shelf per
store × aisle × date (computed in the database by shelf.analytics.compliance), and the planograms themselves."""
import datetime as dt

import pandas as pd
import streamlit as st

from shelf import access
from shelf.analytics import charts, compliance, export, planogram, report
from shelf.analytics.prices import LABEL_MISSING, PRICE_OK, PRICE_WRONG, UNREADABLE, price_lines, price_summary
from shelf.analytics.tally import TallyFilter
from shelf.serving import ui

ui.use_router()
st.title("Compliance")
engine = ui.store()
identity = ui.current_identity()
ui.stored_results_banner()
tab_results, tab_plans, tab_prices = st.tabs(["Compliance", "Planograms", "Prices"])

# ---------------------------------------------------------------------------------------------------------------
with tab_plans:
    may_edit = identity.may("edit_planogram")  # the others see the planograms, not the means to change them
    st.caption("A planogram says which products each aisle should hold and with how many facings: one line per "
               "product. `store` is `*` for every store without its own planogram for that aisle; `product` is a "
               "SKU name from the catalog or `imagenet:<class index>`."
               + (" Import a CSV (`store,aisle,product,expected_facings[,shelf_row]`): it replaces the planogram "
                  "of each store/aisle it names." if may_edit else " An admin imports and edits them."))
    if may_edit:
        up_col, template_col = st.columns([4, 1])
        template_col.download_button("Template (CSV)", planogram.template_bytes(),
                                     file_name="planogram-template.csv", mime="text/csv",
                                     icon=":material/download:", key="planogram_template")
        upload = up_col.file_uploader("Planogram CSV", type=["csv"], key="planogram_upload",
                                      max_upload_size=planogram.MAX_BYTES // (1024 * 1024))
        who = identity.name if identity.via != "local" else \
            st.text_input("Your name (saved with each change)", value=identity.name, key="planogram_by",
                          max_chars=100)
        if upload is not None and st.button("Import this planogram", key="planogram_import", type="primary"):
            try:
                parsed = planogram.import_csv(engine, upload.getvalue(), upload.name, identity, who)
            except (planogram.PlanogramError, access.Forbidden) as exc:
                st.session_state["planogram_outcome"] = ([], [str(exc)])
            else:
                pairs = {(line.store, line.aisle) for line in parsed.lines}
                st.session_state["planogram_outcome"] = (
                    [f"{len(parsed.lines)} line(s) imported for {len(pairs)} store/aisle(s)."], parsed.errors)
    if outcome := st.session_state.get("planogram_outcome"):
        done, errors = outcome
        for message in done:
            st.success(message, icon=":material/task_alt:")
        if errors:
            st.error(f"{len(errors)} line(s) refused:\n\n" + "\n".join(f"- {ui.md_escape(e)}" for e in errors[:50])
                     + (f"\n- … and {len(errors) - 50} more" if len(errors) > 50 else ""), icon=":material/error:")

    stored = planogram.frame(engine)
    pairs = sorted(set(zip(stored["store"], stored["aisle"])))
    NEW = ("", "")
    if not pairs and not may_edit:
        st.info("No planogram is stored yet.", icon=":material/info:")
    else:
        chosen = st.selectbox("Edit the planogram of" if may_edit else "The planogram of",
                              ([NEW] if may_edit else []) + pairs, key="planogram_pair",
                              format_func=lambda p: "a new store/aisle" if p == NEW else
                              f"store {charts.blank_as_dash(p[0])} · aisle {charts.blank_as_dash(p[1])}")
        shown = stored[(stored["store"] == chosen[0]) & (stored["aisle"] == chosen[1])] if chosen != NEW \
            else pd.DataFrame(columns=stored.columns)
        st.caption(f"{len(stored)} planogram line(s) for {len(pairs)} store/aisle(s) stored."
                   + (" Add, change or delete rows, then save; each row keeps who changed it last." if may_edit
                      else " Each row says who changed it last."))
        PLAN_COLUMNS = {
            "store": st.column_config.TextColumn("Store", help="* for every store without its own", required=True),
            "aisle": st.column_config.TextColumn("Aisle", required=True),
            "product": st.column_config.TextColumn("Product", help="SKU name or imagenet:<class index>",
                                                   required=True),
            "name": st.column_config.TextColumn("Name", help="What the product is (from the catalog or ImageNet)"),
            "expected_facings": st.column_config.NumberColumn("Expected facings", min_value=1,
                                                              max_value=planogram.MAX_FACINGS, step=1, required=True),
            "shelf_row": st.column_config.NumberColumn("Shelf row", min_value=1, max_value=planogram.MAX_SHELF_ROW,
                                                       step=1),
            "changed_by": "Changed by", "changed_at": st.column_config.DatetimeColumn("Changed at")}
        plan = shown[planogram.COLUMNS[:3] + ["name"] + planogram.COLUMNS[3:] + ["changed_by", "changed_at"]] \
            .reset_index(drop=True)
        if not may_edit:
            ui.table(plan, hide_index=True, width="stretch", key="planogram_table", column_config=PLAN_COLUMNS)
        else:
            edited = st.data_editor(plan, num_rows="dynamic", hide_index=True, width="stretch",
                                    key=f"planogram_editor_{chosen}", disabled=["name", "changed_by", "changed_at"],
                                    column_config=PLAN_COLUMNS)
            if st.button("Save the planogram", key="planogram_save"):
                parsed = planogram.parse_frame(edited, planogram.by_name_map(engine), "the table")
                if parsed.errors:
                    st.error("Nothing saved; fix these rows first:\n\n" + "\n".join(f"- {ui.md_escape(e)}"
                                                                                  for e in parsed.errors[:50]))
                else:
                    scope = ({chosen} if chosen != NEW else set()) | {(line.store, line.aisle)
                                                                      for line in parsed.lines}
                    saved = planogram.replace(engine, parsed.lines, identity, who, scope)
                    st.session_state["planogram_outcome"] = ([f"Saved {saved} line(s)."], [])
                    st.rerun()
    if pairs:
        st.download_button("Download every planogram (CSV)", lambda: planogram.export_csv_bytes(engine),
                           file_name=f"shelf-planograms-{dt.date.today():%Y%m%d}.csv", mime="text/csv",
                           icon=":material/download:", key="planogram_export", on_click="ignore")

# ---------------------------------------------------------------------------------------------------------------
with tab_prices:  # before the results tab, which stops the page when there is nothing to show
    st.caption("Shelf-edge labels read with *Read shelf-edge prices* (or `--prices`) against the planogram's `price` "
               "column, per product found on the shelf: **price_ok**, **price_wrong** (another price), "
               "**label_missing** (no label under its facings) or **unreadable**.")
    p1, p2, p3 = st.columns([2, 2, 2])
    price_stores = p1.multiselect("Stores", [s for s in report.facets(engine).stores if s], key="price_stores",
                                  placeholder="All stores")
    price_days = compliance.photo_days(engine)
    price_day = p2.selectbox("Date", [None] + price_days, key="price_day", format_func=lambda d: "All dates"
                             if d is None else dt.date.fromordinal(d).isoformat() if d else "Undated photos")
    price_threshold = p3.slider("Minimum confidence", 0.0, 1.0, 0.0, 0.05, format="%.2f", key="price_threshold")
    price_date = dt.date.fromordinal(price_day) if price_day else None
    price_table = price_lines(engine, TallyFilter(price_stores, (), price_date, price_date), price_threshold)
    if price_table.empty:
        st.info("No product with a planned price was found on photos read with prices in this selection. Add a "
                "`price` column to the planogram and recognize with *Read shelf-edge prices*.", icon=":material/sell:")
    else:
        summary = price_summary(price_table)
        q1, q2, q3, q4, q5 = st.columns(5)
        q1.metric("Price compliance", f"{summary['price_compliance']:.0%}", help="Products whose label shows the "
                  "planned price, as a share of the products checked.")
        for column, status, title in zip((q2, q3, q4, q5), (PRICE_WRONG, LABEL_MISSING, UNREADABLE, PRICE_OK),
                                         ("Wrong price", "Label missing", "Unreadable", "Price OK")):
            column.metric(title, f"{summary[status]:,}", help=f"products with status {status}")
        ui.table(price_table, hide_index=True, width="stretch", key="price_table", column_config={
            "store": "Store", "aisle": "Aisle", "captured_on": st.column_config.DateColumn("Date"),
            "product": "Product", "name": "Name", "found_facings": st.column_config.NumberColumn("Facings"),
            "planned_price": st.column_config.NumberColumn("Planned", format="%.2f"), "label": "Label",
            "price_read": st.column_config.NumberColumn("Read", format="%.2f"), "price_text": "Label text",
            "price_confidence": st.column_config.ProgressColumn("OCR confidence", format="percent", min_value=0,
                                                                max_value=1), "price_status": "Status"})
        st.download_button("Download the price lines (CSV)", export.to_csv_bytes(price_table),
                           file_name=f"shelf-prices-{dt.date.today():%Y%m%d}.csv", mime="text/csv",
                           icon=":material/download:", key="price_export", on_click="ignore")

# ---------------------------------------------------------------------------------------------------------------
with tab_results:
    facets = ui.facets_or_stop()
    c1, c2, c3, c4 = st.columns([2, 2, 2, 2])
    stores = c1.multiselect("Stores", [s for s in facets.stores if s], key="compliance_stores",
                            placeholder="All stores")
    aisles = c2.multiselect("Aisles", [a for a in facets.aisles if a], key="compliance_aisles",
                            placeholder="All aisles")
    days = compliance.photo_days(engine)
    ALL_DATES = -1
    day = c3.selectbox("Date", days + [ALL_DATES], key="compliance_day",
                       format_func=lambda d: "All dates" if d == ALL_DATES else
                       (dt.date.fromordinal(d).isoformat() if d else "Undated photos"))
    threshold = c4.slider("Minimum confidence", 0.0, 1.0, 0.0, 0.05, format="%.2f", key="compliance_threshold",
                          help="Regions below this top-1 probability are not counted as found, unless a reviewer "
                               "corrected them.")
    date = dt.date.fromordinal(day) if day > 0 else None
    scope = TallyFilter(stores, aisles, date, date)
    table = compliance.summary(engine, scope, threshold)
    if day == 0:  # undated photos only
        table = table[table["captured_on"].isna()].reset_index(drop=True)
    if table.empty:
        st.info("No store/aisle/date in this selection has both photos and a planogram. Import a planogram on the "
                "Planograms tab.", icon=":material/info:")
        st.stop()
    figures = compliance.overall(table)
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Store/aisles measured", f"{len(table):,}")
    m2.metric("On-shelf availability", f"{figures['osa']:.1%}",
              help="Planned products found (at least one facing) as a share of planned products.")
    m3.metric("Compliance", f"{figures['compliance']:.1%}",
              help="Planned facings found, at most the planned number per product, as a share of planned facings.")
    m4.metric("Empty shelf", **report.empty_share_figure(figures["empty_share"]),
              help="Width of the empty gaps as a share of the shelf width (photos recognized in auto mode).")

    st.subheader("Compliance by store and aisle")
    st.altair_chart(charts.compliance_heatmap(compliance.by_store_and_aisle(table)), width="stretch")

    st.subheader("Worst 20")
    worst = table.head(20)
    contexts = [(s, a, c.toordinal() if c else 0) for s, a, c in zip(worst["store"], worst["aisle"],
                                                                      worst["captured_on"])]
    missing = compliance.lines(engine, scope, threshold, contexts=contexts, statuses=[compliance.MISSING])
    missing_text = missing.groupby(["store", "aisle", "captured_on"], dropna=False)["name"] \
        .agg(lambda names: ", ".join(names)).rename("missing_products")
    worst = worst.merge(missing_text, on=["store", "aisle", "captured_on"], how="left")
    COLUMNS = {"store": "Store", "aisle": "Aisle", "captured_on": st.column_config.DateColumn("Date"),
               "compliance": st.column_config.ProgressColumn("Compliance", format="percent", min_value=0,
                                                             max_value=1),
               "osa": st.column_config.ProgressColumn("On-shelf availability", format="percent", min_value=0,
                                                      max_value=1),
               "empty_share": st.column_config.TextColumn("Empty shelf", help="Not measured: no photo of it was "
                                                          "recognized in auto mode, the mode that finds gaps"),
               "missing_products": st.column_config.TextColumn("Missing products", width="large"),
               "planned_products": st.column_config.NumberColumn("Planned products", format="%d"),
               "found_products": st.column_config.NumberColumn("Found products", format="%d"),
               "missing": st.column_config.NumberColumn("Missing", format="%d"),
               "under": st.column_config.NumberColumn("Under", format="%d"),
               "extra": st.column_config.NumberColumn("Extra", format="%d"),
               "expected_facings": st.column_config.NumberColumn("Expected facings", format="%d"),
               "found_facings": st.column_config.NumberColumn("Found facings (capped)", format="%d")}
    ui.table(worst[["store", "aisle", "captured_on", "compliance", "osa", "empty_share", "missing_products"]]
             .fillna({"missing_products": ""}).assign(empty_share=worst["empty_share"].map(report.empty_share_text)),
             hide_index=True, width="stretch", column_config=COLUMNS,
             key="compliance_worst")

    st.subheader("Look closer")
    # The options are the contexts themselves, not row numbers: after a filter change row 0 is another aisle, and
    # the picker would keep showing the old one's name over the new one's lines. Labels carry no figure that a
    # threshold change could make stale.
    rows = {(r.store, r.aisle, r.captured_on.toordinal() if r.captured_on else 0): r for r in table.itertuples()}
    context = st.selectbox("Store · aisle · date", list(rows), key="compliance_pick", format_func=lambda c: (
        f"{charts.blank_as_dash(c[0])} · {charts.blank_as_dash(c[1])} · "
        f"{dt.date.fromordinal(c[2]) if c[2] else 'undated'}"))
    picked = rows[context]
    st.caption(f"Compliance {picked.compliance:.0%} · on-shelf availability {picked.osa:.0%} · "
               f"{picked.missing} missing, {picked.under} under, {picked.extra} extra")
    detail = compliance.lines(engine, scope, threshold, contexts=[context])
    # an extra product was planned nowhere: 0 facings expected, on no shelf row (not "None")
    shown = detail.assign(expected_facings=detail["expected_facings"].fillna(0),
                          shelf_row=detail["shelf_row"].map(lambda r: "" if pd.isna(r) else str(r)))
    ui.table(shown.drop(columns=["store", "aisle", "captured_on"]), hide_index=True, width="stretch",
             key="compliance_detail", column_config={
                 "product": "Product", "name": "Name", "shelf_row": "Shelf row",
                 "expected_facings": st.column_config.NumberColumn("Expected", format="%d"),
                 "found_facings": st.column_config.NumberColumn("Found", format="%d"), "status": "Status"})
    shots = compliance.photos_of(engine, *context)
    if st.toggle(f"Show the photo{'s' if len(shots) != 1 else ''} with regions ({len(shots)})",
                 key="compliance_photos"):
        for _, shot in shots.head(3).iterrows():
            picture = compliance.overlay_of(engine, shot)
            if picture is None:
                st.caption(f"{ui.md_escape(shot['name'])}: the stored photo file cannot be read.")
            else:
                st.image(picture, width="stretch", caption=f"{ui.md_escape(shot['name'])} · " + (
                    "empty gaps hatched" if shot["finds_gaps"] else "empty shelf not measured (its regions were not "
                                                                    "found in auto mode, which finds gaps)"))
        if len(shots) > 3:
            st.caption(f"… and {len(shots) - 3} more photo(s) of this aisle and date.")

    st.subheader("Trend")
    # Over every date of the selected stores and aisles: at chain scale that reads every region (seconds at 1 M,
    # benchmarks/compliance.py), so it is drawn when asked, not on each visit.
    if st.toggle("Show on-shelf availability and compliance over every date", key="compliance_trend",
                 help="Reads every photo of the selected stores and aisles: a few seconds on a large store."):
        measure = st.segmented_control("Plot", ["Compliance", "On-shelf availability"], default="Compliance",
                                       key="compliance_trend_measure") or "Compliance"
        with st.spinner("Computing the trend …"):
            trend = compliance.trend(engine, TallyFilter(stores, aisles), threshold)
        if trend["date"].nunique() > 1:
            value = "compliance" if measure == "Compliance" else "osa"
            st.altair_chart(charts.store_trend_chart(trend, value, measure, percent=True), width="stretch")
            st.caption(f"**{measure}** per store and photo date, over the store's aisles with a planogram "
                       "photographed that day: "
                       + ("planned facings found (at most as many as planned) ÷ planned facings." if value ==
                          "compliance" else "planned products found ÷ planned products.")
                       + (f" {trend['store'].nunique()} stores: one row each; pick up to {charts.MAX_LINES} under "
                          "*Stores* for lines." if trend["store"].nunique() > charts.MAX_LINES else ""))
        else:
            st.caption("The trend needs photos of planned aisles on two or more dates.")

    with st.expander(f"Every store/aisle/date ({len(table)})"):
        ui.table(table.assign(empty_share=table["empty_share"].map(report.empty_share_text)), hide_index=True,
                 width="stretch", column_config=COLUMNS, key="compliance_table")
    stamp = f"{dt.date.today():%Y%m%d}"
    d1, d2 = st.columns(2)
    d1.download_button("Download the store/aisle table (CSV)", export.to_csv_bytes(table),
                       file_name=f"shelf-compliance-aisles-{stamp}.csv", mime="text/csv",
                       icon=":material/download:", key="download_compliance_aisles")
    d2.download_button("Download every product line (CSV)",
                       lambda: export.to_csv_bytes(compliance.lines(engine, scope, threshold)),
                       file_name=f"shelf-compliance-products-{stamp}.csv", mime="text/csv",
                       icon=":material/download:", key="download_compliance_lines", on_click="ignore")
