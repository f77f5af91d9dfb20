"""SKU catalog: teach Shelf a product from a few reference photos; evaluate how well the catalog separates SKUs."""
import streamlit as st

from shelf import catalog, charts, report, ui
from shelf.categories import RETAIL_CATEGORIES
from shelf.images import MAX_UPLOAD_MB, UPLOAD_EXTENSIONS

ui.use_router()
st.title("SKU catalog")
st.caption("ImageNet knows 'pop bottle', not 'Cola 1.5 L'. Add a SKU with a few photos of it; recognition runs that "
           "use the catalog then name the SKU of each region by embedding similarity, or say *Unknown* when "
           "nothing in the catalog is close enough.")
engine = ui.store()
loaded = ui.require_model()
if loaded is None:
    st.stop()
if message := st.session_state.pop("catalog_message", None):
    st.success(message, icon=":material/task_alt:")

with st.form("add_sku", clear_on_submit=True, border=True):
    st.subheader("Add a SKU")
    c1, c2, c3, c4 = st.columns([3, 2, 2, 2])
    name = c1.text_input("Name", placeholder="Cola 1.5 L")
    brand = c2.text_input("Brand", placeholder="Fizzy Co")
    category = c3.selectbox("Category", RETAIL_CATEGORIES)
    gtin = c4.text_input("GTIN (optional)", placeholder="8, 12, 13 or 14 digits")
    photos = st.file_uploader("Reference photos (a few views of the product)", type=UPLOAD_EXTENSIONS,
                              accept_multiple_files=True, key="sku_photos", max_upload_size=MAX_UPLOAD_MB)
    if st.form_submit_button("Add SKU", type="primary"):
        try:
            sku_id = catalog.add_sku(engine, name, brand, category, gtin)
        except catalog.CatalogError as exc:
            st.error(ui.md_escape(str(exc)))
        else:
            added, problems = catalog.add_references(engine, sku_id, [(f.name, f.getvalue()) for f in photos or []])
            for problem in problems:
                st.warning(ui.md_escape(problem))
            st.session_state["catalog_message"] = f"Added {ui.md_escape(name)} with {added} reference photo(s)."
            if not problems:
                st.rerun()

skus = catalog.skus_frame(engine)
if skus.empty:
    st.info("The catalog is empty. Add a SKU with two or more reference photos to start.", icon=":material/info:")
    st.stop()

st.subheader(f"{len(skus)} SKU(s)")
ui.table(skus.drop(columns="id"), hide_index=True, width="stretch",
         column_config={"name": "SKU", "brand": "Brand", "category": "Category", "gtin": "GTIN",
                        "references": st.column_config.NumberColumn("Reference photos", format="%d")})
c1, c2, c3 = st.columns([3, 3, 2])
chosen = c1.selectbox("SKU", skus["id"], format_func=dict(zip(skus["id"], skus["name"])).get, key="sku_chosen")
more = c2.file_uploader("Add reference photos", type=UPLOAD_EXTENSIONS, accept_multiple_files=True,
                        key="sku_more", max_upload_size=MAX_UPLOAD_MB)
if more and c3.button("Add photos", key="sku_add_photos"):
    added, problems = catalog.add_references(engine, int(chosen), [(f.name, f.getvalue()) for f in more])
    for problem in problems:
        st.warning(ui.md_escape(problem))
    st.session_state["catalog_message"] = f"Added {added} reference photo(s)."
    st.rerun()
reviewed = report.reviewed_regions(engine)
if not reviewed.empty:
    with st.expander(f"Add references from reviewed regions ({len(reviewed)}, newest first)"):
        labels = dict(zip(reviewed["region_id"], reviewed["photo"] + " #" + (reviewed["position"] + 1).astype(str)
                          + " → " + reviewed["label"]))
        picked = st.multiselect("Reviewed regions", list(labels), format_func=labels.get, key="promote_regions")
        if picked and st.button(f"Add {len(picked)} crop(s) to the selected SKU", key="promote"):
            added, problems = catalog.promote_regions(engine, int(chosen), picked)
            for problem in problems:
                st.warning(ui.md_escape(problem))
            st.session_state["catalog_message"] = f"Added {added} crop(s) as reference photos."
            st.rerun()
if c3.button("Remove this SKU", key="sku_remove"):
    catalog.remove_sku(engine, int(chosen))
    st.session_state["catalog_message"] = "SKU removed; regions matched to it are now unknown."
    st.rerun()

st.subheader("Matching")
threshold = catalog.get_threshold(engine)
st.caption(f"Similarity threshold in use: **{threshold:.3f}** — regions less similar than this to every SKU are "
           "Unknown.")
with st.spinner("Embedding reference photos …"):
    embeddings, sku_ids, reference_ids = catalog.reference_embeddings(engine, loaded)
if len(set(sku_ids)) < 2 or len(sku_ids) < 3:
    st.info("Evaluation needs at least two SKUs and three reference photos.", icon=":material/info:")
else:
    names = dict(zip(skus["id"], skus["name"])) | {catalog.UNKNOWN: "Unknown"}
    results = catalog.leave_one_out(embeddings, sku_ids)
    suggested, f1 = catalog.suggest_threshold(results)
    report = catalog.evaluate(results["true"], results["predicted"], results["similarity"], threshold)
    m1, m2, m3 = st.columns(3)
    m1.metric("Leave-one-out accuracy", f"{report.accuracy:.0%}", help="Each reference matched against all the "
              "others, with the threshold in use (a known SKU called Unknown counts as wrong).")
    m2.metric("Suggested threshold", f"{suggested:.3f}", help="Maximises F1 of known-vs-unknown decisions, where "
              "each SKU's photos matched against the catalog without that SKU stand in for unknown products.")
    m3.metric("F1 at the suggestion", f"{f1:.2f}")
    if abs(suggested - threshold) > 1e-6 and st.button(f"Use {suggested:.3f} as the threshold",
                                                       key="apply_threshold"):
        catalog.set_threshold(engine, suggested)
        st.session_state["catalog_message"] = f"Threshold set to {suggested:.3f}."
        st.rerun()
    per_sku = report.per_sku.assign(sku=lambda t: t["sku"].map(names))
    left, right = st.columns([2, 3])
    with left:
        ui.table(per_sku, hide_index=True, width="stretch", column_config={
            "sku": "SKU", "support": st.column_config.NumberColumn("Photos", format="%d"),
            "precision": st.column_config.NumberColumn("Precision", format="percent"),
            "recall": st.column_config.NumberColumn("Recall", format="percent")})
    right.altair_chart(charts.confusion_heatmap(report.confusion, names), width="stretch")
    if not report.worst.empty:
        st.markdown("**Worst confusions** — the most confident wrong matches (leave-one-out):")
        for column, (position, row) in zip(st.columns(5), report.worst.head(5).iterrows()):
            photo = catalog.reference_photo(engine, int(reference_ids[position]))
            if photo is not None:
                column.image(photo, width="stretch")
            column.caption(f"{ui.md_escape(names.get(row['true'], '?'))} taken for "
                           f"{ui.md_escape(names.get(row['predicted'], '?'))} ({row['similarity']:.3f})")
    with st.expander("Evaluate on a labelled set"):
        st.caption("A zip with one folder per SKU (folder name = SKU name). Folders named after products that are "
                   "not in the catalog test that they come out Unknown.")
        labelled = st.file_uploader("Labelled set (.zip)", type=["zip"], key="labelled_zip",
                                    max_upload_size=MAX_UPLOAD_MB)
        if labelled is not None:
            try:
                items, problems = catalog.labelled_from_zip(labelled.getvalue(), labelled.name)
            except catalog.CatalogError as exc:
                st.error(ui.md_escape(str(exc)))
            else:
                evaluation, id_names, more = catalog.evaluate_labelled(engine, loaded, items, threshold)
                for problem in problems + more:
                    st.warning(ui.md_escape(problem))
                st.metric("Accuracy on the labelled set", f"{evaluation.accuracy:.0%}",
                          help=f"{len(items)} photo(s), threshold {threshold:.3f}")
                ui.table(evaluation.per_sku.assign(sku=lambda t: t["sku"].map(id_names)), hide_index=True,
                         width="stretch")
                st.altair_chart(charts.confusion_heatmap(evaluation.confusion, id_names), width="stretch")
    if st.button("Match all stored regions against the catalog now", key="rematch"):
        n = catalog.match_stored_regions(engine, catalog.build_index(embeddings, sku_ids), loaded.weights.sha256,
                                         threshold)
        st.session_state["catalog_message"] = f"Matched {n} stored region(s)."
        st.rerun()
