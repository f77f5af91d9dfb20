"""Widgets for recognised photos: the result card (overlay, facings, region inspector), its context and deletion,
region exports and the comparison of regions with true boxes."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st
from sqlalchemy.engine import Engine

from shelf.analytics.tally import tally
from shelf.ingest.overlay import annotated, colours, draw_legend, draw_overlay, gap_legend, png_bytes
from shelf.serving.ui.session import RECENT_PREVIEWS, current_identity, md_escape, shows, store, table
from shelf.text import percent

if TYPE_CHECKING:
    from shelf.recognition.pipeline import PhotoResult, RegionResult


def top_k_table(region: RegionResult) -> None:
    st.dataframe(
        pd.DataFrame([{"Rank": p.rank, "Label": p.label, "Class": p.class_index, "Confidence": p.probability}
                      for p in region.predictions]),  # "percent": as Review shows it, and as shelf.text.percent
        column_config={"Confidence": st.column_config.ProgressColumn("Confidence", format="percent", min_value=0,
                                                                     max_value=1)},
        hide_index=True, width="stretch")


def sku_line(region: RegionResult, sku_names: dict[int, str]) -> str:
    """'**Cola 1.5 L** · SKU match 0.934' / 'SKU: *Unknown* (closest similarity 0.412)' / '' without the catalog."""
    if region.sku_similarity is None:
        return ""
    if region.sku_id is None:
        return f"SKU: *Unknown* (closest similarity {region.sku_similarity:.3f})"
    return f"**{md_escape(sku_names.get(region.sku_id, '?'))}** · SKU match {region.sku_similarity:.3f}"


def photo_result(result: PhotoResult, colour_by: str = "label", sku_names: dict[int, str] | None = None) -> None:
    """One recognised photo: a single crop shows its top-k; a shelf shows the overlay, facings and a region picker.
    A result whose preview was not kept (older than the RECENT_PREVIEWS most recent) shows its tables only."""
    sku_names = sku_names or {}
    stored_note = " · *already stored*" if result.already_stored else \
        " · *recognized again*" if result.recognized_again else ""
    with st.container(border=True):
        if result.photo_id is not None and shows("edit_photo"):
            photo_actions(result)
        for note in result.notes:
            st.caption(f":material/info: {md_escape(note)}")
        if result.preview is None:
            st.caption(f":material/hide_image: No preview: this page keeps the pictures of the {RECENT_PREVIEWS} "
                       "most recent photos only. The photo and its regions are stored (see Review and Tallies).")
        if len(result.regions) == 1:
            if result.preview is not None:
                picture, details = st.columns([1, 2])  # the picture fits its column at any width
                picture.image(result.preview, caption=md_escape(result.name), width="stretch")
            else:
                details = st.container()
            best = result.regions[0].top1
            with details:
                if result.preview is None:
                    st.markdown(f"**{md_escape(result.name)}**")
                if line := sku_line(result.regions[0], sku_names):
                    st.markdown(line)
                st.markdown(f"**{md_escape(best.label)}** · class {best.class_index} · {percent(best.probability)}"
                            + stored_note)
                top_k_table(result.regions[0])
            return
        n_gaps = len(getattr(result, "gaps", []))
        gap_note = f" · {n_gaps} empty gap{'s' if n_gaps != 1 else ''} (hatched)" if n_gaps else ""
        st.markdown(f"**{md_escape(result.name)}** · {len(result.regions)} regions{gap_note}{stored_note}")
        if result.preview is not None:
            regions = [(r.box, sku_names.get(r.sku_id, r.top1.label), r.top1.class_index, r.top1.probability)
                       for r in result.regions]
            picture, key = st.columns([4, 1])
            gaps, labels = getattr(result, "gaps", []), getattr(result, "labels", [])
            picture.image(draw_overlay(result.preview, result.size, regions, colour_by, gaps, labels), width="stretch")
            key.image(draw_legend(colours(regions, colour_by)[1] + gap_legend(gaps, labels), width=300,
                                  font_size=16), width="stretch",
                      caption="Colors: " + ("labels with the most facings first" if colour_by == "label"
                                             else "top-1 confidence"))
            key.download_button("Download annotated PNG",
                                data=lambda: png_bytes(annotated(result.preview, result.size, regions, colour_by,
                                                                 gaps, labels)),
                                file_name=f"shelf-photo-{result.photo_id}-annotated.png", mime="image/png",
                                icon=":material/download:", key=f"overlay-{result.photo_id}", on_click="ignore")
        facings_col, inspect_col = st.columns(2)
        facings = tally(pd.DataFrame([{"class_index": r.top1.class_index, "label": r.top1.label,
                                       "probability": r.top1.probability, "corrected": False}
                                      for r in result.regions]))
        facings_col.dataframe(facings[["label", "class_index", "facings", "mean_confidence"]], hide_index=True,
                              width="stretch", column_config={
                                  "label": "Label", "class_index": st.column_config.NumberColumn("Class", format="%d"),
                                  "facings": st.column_config.NumberColumn("Facings", format="%d"),
                                  "mean_confidence": st.column_config.NumberColumn("Mean conf.", format="percent")})
        with inspect_col:
            chosen = st.selectbox("Inspect a region", range(len(result.regions)), key=f"region-{result.photo_id}",
                                  format_func=lambda i: f"#{i + 1} · {result.regions[i].top1.label} · "
                                                        f"{percent(result.regions[i].top1.probability)}")  # as tagged
            region = result.regions[chosen]
            crop_col, table_col = st.columns([1, 3])
            if result.preview is not None:
                scale = result.preview.width / result.size[0]
                crop = result.preview.crop(tuple(round(v * scale) for v in region.box.as_tuple))
                crop_col.image(crop, caption=f"{region.box.width}×{region.box.height} px", width="stretch")
            with table_col:
                if line := sku_line(region, sku_names):
                    st.markdown(line)
                if note := getattr(result, "label_note", lambda _: "")(chosen):
                    st.markdown(f":material/sell: Shelf label: {md_escape(note)}")
                top_k_table(region)


def _context_text(context) -> str:
    return " · ".join([md_escape(context.store) or "no store", md_escape(context.aisle) or "no aisle",
                       str(context.captured_on or "no date")])


def photo_actions(result: PhotoResult) -> None:
    """Where and when a stored photo was taken, editable; and a way to delete it (confirmed in a dialog)."""
    from shelf.storage import store as stored
    try:
        context = stored.photo_context(store(), result.photo_id)
    except ValueError:  # deleted since (in another tab or by the CLI)
        st.caption(f":material/delete: {md_escape(result.name)} is no longer stored.")
        return
    fields = [f"photo-{field}-{result.photo_id}" for field in ("store", "aisle", "date")]
    if st.session_state.get(f"photo-shown-{result.photo_id}") != context:  # changed elsewhere: show what is stored
        for field in fields:
            st.session_state.pop(field, None)
        st.session_state[f"photo-shown-{result.photo_id}"] = context
    with st.popover(_context_text(context), icon=":material/edit:",
                    help="Where and when this photo was taken: correct it, or delete the photo"):
        with st.form(f"photo-context-{result.photo_id}", border=False, enter_to_submit=False):
            st.text_input("Store", context.store, key=fields[0])
            st.text_input("Aisle", context.aisle, key=fields[1])
            st.date_input("Photo date", context.captured_on, format="YYYY-MM-DD", key=fields[2])
            st.form_submit_button("Save", type="primary", on_click=_save_photo_context,
                                  args=(result.photo_id, result.name, fields))
        if shows("delete_photo"):
            st.button("Delete this photo …", key=f"photo-delete-{result.photo_id}", icon=":material/delete:",
                      on_click=st.session_state.__setitem__,
                      args=("photo_to_delete", (result.photo_id, result.name)))


def _save_photo_context(photo_id: int, name: str, fields: list[str]) -> None:
    """The photo card's form, saved before the page reruns (so the card shows the new context at once)."""
    from shelf.storage import store as stored
    new = stored.Context(*(st.session_state[field] for field in fields)).cleaned()
    stored.set_photo_context(store(), photo_id, new, by=current_identity())
    st.toast(f"Saved: {md_escape(name)} is now {_context_text(new)}.", icon=":material/check:")


def _forget_deletion() -> None:
    st.session_state.pop("photo_to_delete", None)


@st.dialog("Delete this photo?", on_dismiss=_forget_deletion)
def _confirm_photo_deletion(photo_id: int, name: str, results_key: str) -> None:
    from shelf.storage import store as stored
    st.markdown(f"**{md_escape(name)}** goes from the store with its regions, predictions and corrections; the "
                "tallies and exports no longer count it. This cannot be undone.")
    yes, no = st.columns(2)
    delete = yes.button("Delete", type="primary", key="photo_delete_confirm", icon=":material/delete:")
    keep = no.button("Keep it", key="photo_delete_cancel")
    if delete:
        try:
            stored.delete_photo(store(), photo_id, by=current_identity())
        except ValueError:
            pass  # already gone: what the user wanted
        st.session_state[results_key] = [r for r in st.session_state.get(results_key, [])
                                         if r.photo_id != photo_id]
        st.session_state["photo_deleted"] = name
    if delete or keep:
        _forget_deletion()
        st.rerun()  # closes the dialog


def confirm_photo_deletion(results_key: str = "results") -> None:
    """Ask before deleting the photo a result card's "Delete this photo …" chose (one dialog per run); say when
    one was deleted."""
    if deleted := st.session_state.pop("photo_deleted", None):
        st.toast(f"Deleted {md_escape(deleted)}.", icon=":material/delete:")
    if chosen := st.session_state.get("photo_to_delete"):
        _confirm_photo_deletion(*chosen, results_key)


LARGE_EXPORT = 100_000  # regions; larger selections are written to a compressed file first, with a progress bar
EXPORT_FORMATS = {"csv": ("Detections (CSV)", "csv", "text/csv"), "coco": ("COCO (JSON)", "json", "application/json"),
                  "sku110k": ("SKU-110K (CSV)", "csv", "text/csv")}


def region_exports(engine: Engine, f, threshold: float, n_regions: int, description: dict, stamp: str) -> None:
    """Download buttons for the selected regions in every export format, plus the provenance manifest."""
    from shelf.analytics import export
    columns = st.columns(4)
    columns[3].download_button("Manifest (JSON)", lambda: export.manifest_json(engine, f, description),
                               file_name=f"shelf-manifest-{stamp}.json", mime="application/json",
                               key="download_manifest", on_click="ignore")
    if n_regions <= LARGE_EXPORT:
        for column, (fmt, (label, ext, mime)) in zip(columns, EXPORT_FORMATS.items()):
            column.download_button(label, lambda fmt=fmt: export.regions_bytes(fmt, engine, f, threshold),
                                   file_name=f"shelf-{fmt}-{stamp}.{ext}", mime=mime, key=f"download_{fmt}",
                                   on_click="ignore")
        return
    fmt = columns[0].selectbox("Format", list(EXPORT_FORMATS), format_func=lambda k: EXPORT_FORMATS[k][0],
                               key="large_export_format")
    columns[1].caption(f"{n_regions:,} regions: the file is written first (compressed), then offered for download. "
                       "`python -m shelf export detections` writes any size without the browser.")
    if columns[2].button("Prepare the export", key="prepare_export", icon=":material/hourglass_top:"):
        import gzip
        import tempfile
        progress = st.progress(0.0, text="Writing the export …")
        previous = st.session_state.pop("large_export", None)
        if previous:
            Path(previous[0]).unlink(missing_ok=True)
        handle, path = tempfile.mkstemp(prefix="shelf-export-", suffix=".gz")
        with open(handle, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=5) as out:
            export.write_regions(fmt, engine, out, f, threshold, progress=lambda done: progress.progress(
                min(1.0, done / n_regions), text=f"Writing the export … {done:,} of {n_regions:,} regions"))
        progress.empty()
        label, ext, _ = EXPORT_FORMATS[fmt]
        st.session_state["large_export"] = (path, f"shelf-{fmt}-{stamp}.{ext}.gz", label)
    if prepared := st.session_state.get("large_export"):
        path, name, label = prepared
        st.download_button(f"Download {label} ({Path(path).stat().st_size / 2**20:.1f} MB, gzip)",
                           lambda: Path(path).read_bytes(), file_name=name, mime="application/gzip",
                           key="download_large", on_click="ignore", icon=":material/download:")

def region_comparison(comparisons: list, mode_text: str) -> None:
    """Regions against true boxes: overall figures, a table per photo, and each photo with both sets of boxes."""
    from shelf.ingest.evaluation import greedy_matches, summarise
    from shelf.ingest.overlay import draw_comparison
    done = [c for c in comparisons if c.ok]
    for c in comparisons:
        if not c.ok:
            st.error(c.error, icon=":material/broken_image:")
    if not done:
        return
    per_photo, overall = summarise([(c.name, c.found, c.scores, c.truth) for c in done])
    st.caption(f"`{md_escape(mode_text)}` on {len(done)} photo(s). A found box counts when it overlaps a true box "
               "at IoU ≥ 0.5 (one to one, best overlaps first)"
               + ("; AP is COCO-style (101 recall points)." if overall.ap50 is not None else "."))
    figures = [("Precision", f"{overall.precision:.3f}"), ("Recall", f"{overall.recall:.3f}"),
               ("F1", f"{overall.f1:.3f}"), ("Found − true", f"{overall.count_error:+d}")]
    if overall.ap50 is not None:
        figures += [("AP@0.5", f"{overall.ap50:.3f}"), ("AP@0.5:0.95", f"{overall.ap50_95:.3f}")]
    for column, (label, value) in zip(st.columns(len(figures)), figures):
        column.metric(label, value)
    per_photo_rows = pd.DataFrame([e.as_row() for e in per_photo]).dropna(axis=1, how="all")
    ratio = {column: st.column_config.NumberColumn(label, format="%.3f") for column, label in
             (("precision", "Precision"), ("recall", "Recall"), ("f1", "F1"), ("ap50", "AP@0.5"),
              ("ap50_95", "AP@0.5:0.95"))}
    table(per_photo_rows, hide_index=True, width="stretch", column_config={
        "photo": "Photo", "found": "Found", "true": "True", "matched": "Matched", "count_error": "Found − true",
        **ratio})
    st.caption(":blue[**Blue**]: found · :orange[**orange**]: true · tinted: no match (a false box or a missed "
               "product)")
    for c, e in zip(done, per_photo):
        st.image(draw_comparison(c.preview, c.size, c.found, c.truth, greedy_matches(c.found, c.truth)),
                 caption=f"{md_escape(c.name)} · found {e.found}, true {e.truth}, precision {e.precision:.2f}, "
                         f"recall {e.recall:.2f}", width="stretch")
        for note in c.notes:
            st.caption(f":material/info: {md_escape(note)}")
