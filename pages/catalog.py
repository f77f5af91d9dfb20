"""SKU catalog: teach Shelf a product from a few reference photos; evaluate how well the catalog separates SKUs."""
import streamlit as st

from shelf.analytics import charts, report
from shelf.analytics.categories import RETAIL_CATEGORIES
from shelf.ingest.images import MAX_UPLOAD_MB, UPLOAD_EXTENSIONS
from shelf.recognition import catalog
from shelf.serving import ui

ui.use_router()
st.title("SKU catalog")
st.caption("ImageNet knows 'pop bottle', not 'Cola 1.5 L'. Add a SKU with a few photos of it; recognition runs that "
           "use the catalog then name the SKU of each region by embedding similarity, or say *Unknown* when "
           "nothing in the catalog is close enough.")
engine = ui.store()
me = ui.current_identity()
may_edit = ui.shows("edit_catalog")
REFERENCE_PHOTOS = "at least one; a few views of the product match better"  # what catalog.create_sku requires
loaded = ui.require_model()
if loaded is None:
    st.stop()
if outcome := st.session_state.pop("catalog_outcome", None):  # what the last action did, shown once
    message, problems = outcome
    (st.warning if problems else st.success)(message + "".join(f"\n- {ui.md_escape(p)}" for p in problems),
                                             icon=":material/task_alt:")


def done(message: str, problems=()) -> None:
    """Report an action after the rerun that shows its result (with the files it could not use, if any)."""
    st.session_state["catalog_outcome"] = (message, list(problems))
    st.rerun()


if may_edit:
    form = st.session_state.get("sku_form", 0)  # a new number after each SKU added: an empty form
    with st.form(f"add_sku_{form}", border=True):
        st.subheader("Add a SKU")
        c1, c2, c3, c4 = st.columns([3, 2, 2, 2])
        name = c1.text_input("Name", placeholder="Cola 1.5 L", key=f"sku_name_{form}")
        brand = c2.text_input("Brand", placeholder="Fizzy Co", key=f"sku_brand_{form}")
        category = c3.selectbox("Category", RETAIL_CATEGORIES, key=f"sku_category_{form}")
        gtin = c4.text_input("GTIN (optional)", placeholder="8, 12, 13 or 14 digits", key=f"sku_gtin_{form}")
        photos = st.file_uploader(f"Reference photos ({REFERENCE_PHOTOS})", type=UPLOAD_EXTENSIONS,
                                  accept_multiple_files=True, key=f"sku_photos_{form}", max_upload_size=MAX_UPLOAD_MB)
        if st.form_submit_button("Add SKU", type="primary"):
            try:
                _, added, problems = catalog.create_sku(engine, name, brand, category, gtin,
                                                        ((f.name, f.getvalue()) for f in photos or []), by=me)
            except catalog.CatalogError as exc:
                st.error(ui.md_escape(str(exc)), icon=":material/error:")  # the form keeps what was typed
            else:
                taken = f"{added} of {len(photos)}" if problems else f"{added}"
                st.session_state["sku_form"] = form + 1
                done(f"Added {ui.md_escape(name.strip())} with {taken} reference photo(s).", problems)

skus = catalog.skus_frame(engine)
if skus.empty:
    st.info("The catalog is empty." + (f" Add a SKU with its reference photos ({REFERENCE_PHOTOS}) to start."
                                        if may_edit else ""),
            icon=":material/info:")
    st.stop()

st.subheader(f"{len(skus)} SKU(s)")
ui.table(skus.drop(columns="id"), hide_index=True, width="stretch",
         column_config={"name": "SKU", "brand": "Brand", "category": "Category", "gtin": "GTIN",
                        "references": st.column_config.NumberColumn("Reference photos", format="%d")})
if may_edit:
    c1, c2, c3 = st.columns([3, 3, 2])
    chosen = c1.selectbox("SKU", skus["id"], format_func=dict(zip(skus["id"], skus["name"])).get, key="sku_chosen")
    more = c2.file_uploader("Add reference photos", type=UPLOAD_EXTENSIONS, accept_multiple_files=True,
                            key="sku_more", max_upload_size=MAX_UPLOAD_MB)
    if more and c3.button("Add photos", key="sku_add_photos"):
        added, problems = catalog.add_references(engine, int(chosen), [(f.name, f.getvalue()) for f in more], by=me)
        done(f"Added {added} of {len(more)} reference photo(s).", problems)
    reviewed = report.reviewed_regions(engine)
    if not reviewed.empty:
        with st.expander(f"Add references from reviewed regions ({len(reviewed)}, newest first)"):
            labels = dict(zip(reviewed["region_id"], reviewed["photo"] + " #"
                              + (reviewed["position"] + 1).astype(str) + " → " + reviewed["label"]))
            picked = st.multiselect("Reviewed regions", list(labels), format_func=labels.get, key="promote_regions")
            if picked and st.button(f"Add {len(picked)} crop(s) to the selected SKU", key="promote"):
                added, problems = catalog.promote_regions(engine, int(chosen), picked, by=me)
                done(f"Added {added} crop(s) as reference photos.", problems)


def forget_removal() -> None:
    st.session_state.pop("sku_to_remove", None)


@st.dialog("Remove this SKU?", on_dismiss=forget_removal)
def confirm_removal(sku_id: int, name: str) -> None:
    references, matched = catalog.sku_usage(engine, sku_id)
    st.markdown(f"**{ui.md_escape(name)}** goes, with its {references} reference photo(s); {matched} stored "
                "region(s) matched to it become *Unknown* (their ImageNet labels stay). This cannot be undone.")
    yes, no = st.columns(2)
    if yes.button("Remove", type="primary", key="sku_remove_confirm", icon=":material/delete:"):
        catalog.remove_sku(engine, sku_id, by=me)
        forget_removal()
        done(f"Removed {ui.md_escape(name)}.")
    if no.button("Keep it", key="sku_remove_cancel"):
        forget_removal()
        st.rerun()


if may_edit and c3.button("Remove this SKU …", key="sku_remove"):
    st.session_state["sku_to_remove"] = int(chosen)
if (to_remove := st.session_state.get("sku_to_remove")) in set(skus["id"]):
    confirm_removal(to_remove, dict(zip(skus["id"], skus["name"]))[to_remove])

def per_sku_table(evaluation: catalog.Evaluation, names: dict) -> None:
    """Photos, precision and recall per SKU; "Unknown" only when the set holds products outside the catalog."""
    rows = evaluation.per_sku[(evaluation.per_sku["sku"] != catalog.UNKNOWN) | (evaluation.per_sku["support"] > 0)]
    ui.table(rows.assign(sku=rows["sku"].map(names)), hide_index=True, width="stretch", column_config={
        "sku": "SKU", "support": st.column_config.NumberColumn("Photos", format="%d"),
        "precision": st.column_config.NumberColumn("Precision", format="percent"),
        "recall": st.column_config.NumberColumn("Recall", format="percent")})


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
    loo = catalog.evaluate(results["true"], results["predicted"], results["similarity"], threshold)
    m1, m2, m3 = st.columns(3)
    m1.metric("Leave-one-out accuracy", f"{loo.accuracy:.0%}", help="Each reference matched against all the "
              "others, with the threshold in use (a known SKU called Unknown counts as wrong).")
    m2.metric("Suggested threshold", f"{suggested:.3f}", help="Maximises F1 of known-vs-unknown decisions, where "
              "each SKU's photos matched against the catalog without that SKU stand in for unknown products.")
    m3.metric("F1 at the suggestion", f"{f1:.2f}")
    if may_edit and abs(suggested - threshold) > 1e-6 and st.button(f"Use {suggested:.3f} as the threshold",
                                                                    key="apply_threshold"):
        catalog.set_threshold(engine, suggested, by=me)
        done(f"Threshold set to {suggested:.3f}.")
    per_sku_table(loo, names)
    st.markdown("**Confusions** — each reference photo matched against all the others (leave-one-out):")
    st.altair_chart(charts.confusion_heatmap(loo.confusion, names), width="content")
    if not loo.worst.empty:
        st.markdown("**Worst confusions** — the most confident wrong matches (leave-one-out):")
        for column, (position, row) in zip(st.columns(5), loo.worst.head(5).iterrows()):
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
                per_sku_table(evaluation, id_names)
                st.altair_chart(charts.confusion_heatmap(evaluation.confusion, id_names), width="content")
    if may_edit and st.button("Match all stored regions against the catalog now", key="rematch"):
        n = catalog.match_stored_regions(engine, catalog.build_index(embeddings, sku_ids), loaded.weights.sha256,
                                         threshold, by=me)
        done(f"Matched {n} stored region(s).")
