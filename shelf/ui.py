"""The one module of `shelf` that imports Streamlit: cached loaders and small widgets the pages share."""
from __future__ import annotations

import re
import runpy
from pathlib import Path

import pandas as pd
import streamlit as st
from sqlalchemy.engine import Engine

from shelf import config
from shelf.model import HOW_TO_GET_WEIGHTS, LoadedModel, WeightsStatus, load_model
from shelf.overlay import COLOUR_MODES, draw_overlay, png_bytes
from shelf.pipeline import PhotoResult, RegionResult
from shelf.store import open_store
from shelf.tally import tally

MODEL_PAGE = "pages/home.py"
ROUTER = Path(__file__).resolve().parents[1] / "streamlit_app.py"


@st.cache_resource(show_spinner="Loading ResNet-18 …")
def _cached_model(backend: str) -> tuple[LoadedModel | None, WeightsStatus, str | None]:
    # Shared by every session and thread: the model is used read-only under inference_mode.
    from shelf.backends import BackendError, with_backend
    loaded, status = load_model()
    if loaded is None:
        return None, status, None
    try:
        return with_backend(loaded, backend, store()), status, None
    except BackendError as exc:
        return with_backend(loaded, "onnx"), status, str(exc)


@st.cache_resource(show_spinner=False)
def _cached_store(url: str) -> Engine:
    return open_store(url)


def use_router() -> None:
    """First line of every page.

    With a `pages/` folder beside the entry point, Streamlit starts each server process (and every AppTest run) in
    its legacy multipage mode, which runs a sub-page file directly when it is the process's first request: no
    router, no banner, the wrong sidebar. Leave legacy mode and run the router right here; it runs this page.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        runpy.run_path(str(ROUTER), run_name="__main__")
        st.stop()


def model() -> tuple[LoadedModel | None, WeightsStatus]:
    from shelf.backends import chosen_backend
    loaded, status, _ = _cached_model(chosen_backend(store()))
    return loaded, status


def backend_problem() -> str | None:
    """Why the chosen backend is not the one running (fast mode without calibration data), if it is not."""
    from shelf.backends import chosen_backend
    return _cached_model(chosen_backend(store()))[2]


def reload_model() -> None:
    _cached_model.clear()


def store() -> Engine:
    return _cached_store(config.database_url())


@st.cache_data(max_entries=4, show_spinner="Loading detections …")
def _cached_detections(url: str, fingerprint: tuple) -> pd.DataFrame:
    from shelf.detections import load_detections
    return load_detections(_cached_store(url))


def detections() -> pd.DataFrame:
    """The store's detections, rebuilt only when the store changed (filters and charts rerun on cached data)."""
    from shelf.store import fingerprint
    url = config.database_url()
    return _cached_detections(url, fingerprint(_cached_store(url)))


def stored_detections_or_stop() -> pd.DataFrame:
    """The detections; on an empty store, a pointer to Recognize instead of the rest of the page."""
    frame = detections()
    if frame.empty:
        st.info("Nothing is stored yet. Recognize some photos first.", icon=":material/info:")
        st.page_link("pages/recognize.py", label="Go to Recognize", icon=":material/photo_camera:")
        st.stop()
    return frame


def md_escape(text: str) -> str:
    """Escape user-provided text (file names, store names) before it goes into Markdown."""
    return re.sub(r"([\\`*_{}\[\]()<>#+\-.!|~$])", r"\\\1", text)


def weights_banner() -> None:
    """A banner on every page while the weights are not the verified ImageNet file."""
    loaded, _ = model()
    if loaded is not None and not loaded.weights.verified:
        st.warning(f"**Demo weights in use — {loaded.weights.kind}.** Labels below are not ImageNet predictions; "
                   "every result stored now is marked unverified in its provenance.", icon=":material/warning:")


def require_model(link_to_model_page: bool = True) -> LoadedModel | None:
    """The loaded model, or a plain explanation of what to do when there is none."""
    loaded, status = model()
    if loaded is None:
        st.error(f"**The ResNet-18 weights are not available**, so nothing can be recognized yet. "
                 f"{status.problem}", icon=":material/error:")
        st.markdown(HOW_TO_GET_WEIGHTS)
        if link_to_model_page:
            st.page_link(MODEL_PAGE, label="Import a weights file on the Home & model page",
                         icon=":material/upload:")
    return loaded


def top_k_table(region: RegionResult) -> None:
    st.dataframe(
        pd.DataFrame([{"Rank": p.rank, "Label": p.label, "Class": p.class_index, "Confidence": 100 * p.probability}
                      for p in region.predictions]),
        column_config={"Confidence": st.column_config.ProgressColumn("Confidence", format="%.1f%%", min_value=0,
                                                                     max_value=100)},
        hide_index=True, width="stretch")


def sku_line(region: RegionResult, sku_names: dict[int, str]) -> str:
    """'**Cola 1.5 L** · SKU match 0.934' / 'SKU: *Unknown* (closest similarity 0.412)' / '' without the catalog."""
    if region.sku_similarity is None:
        return ""
    if region.sku_id is None:
        return f"SKU: *Unknown* (closest similarity {region.sku_similarity:.3f})"
    return f"**{md_escape(sku_names.get(region.sku_id, '?'))}** · SKU match {region.sku_similarity:.3f}"


def photo_result(result: PhotoResult, colour_by: str = "label", sku_names: dict[int, str] | None = None) -> None:
    """One recognised photo: a single crop shows its top-k; a shelf shows the overlay, facings and a region picker."""
    sku_names = sku_names or {}
    stored_note = " · *already stored*" if result.already_stored else ""
    with st.container(border=True):
        for note in result.notes:
            st.caption(f":material/info: {md_escape(note)}")
        if len(result.regions) == 1:
            picture, table = st.columns([1, 3])
            picture.image(result.preview, caption=result.name, width=240)
            best = result.regions[0].top1
            with table:
                if line := sku_line(result.regions[0], sku_names):
                    st.markdown(line)
                st.markdown(f"**{md_escape(best.label)}** · class {best.class_index} · {best.probability:.1%}"
                            + stored_note)
                top_k_table(result.regions[0])
            return
        st.markdown(f"**{md_escape(result.name)}** · {len(result.regions)} regions{stored_note}")
        regions = [(r.box, sku_names.get(r.sku_id, r.top1.label), r.top1.class_index, r.top1.probability)
                   for r in result.regions]
        overlay = draw_overlay(result.preview, result.size, regions, colour_by)
        st.image(overlay, width="stretch")
        st.download_button("Download annotated PNG", data=lambda: png_bytes(overlay),
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
                                  format_func=lambda i: f"{i + 1} · {result.regions[i].top1.label} "
                                                        f"{result.regions[i].top1.probability:.0%}")
            region = result.regions[chosen]
            scale = result.preview.width / result.size[0]
            crop = result.preview.crop(tuple(round(v * scale) for v in region.box.as_tuple))
            crop_col, table_col = st.columns([1, 3])
            crop_col.image(crop, caption=f"{region.box.width}×{region.box.height} px", width="stretch")
            with table_col:
                if line := sku_line(region, sku_names):
                    st.markdown(line)
                top_k_table(region)


def parsed_box_file(upload, container=st):
    """An uploaded box file, parsed, with its format and problems shown in `container`; None if none or unusable."""
    from shelf.boxfiles import BoxFileError, parse_box_file
    if upload is None:
        return None
    try:
        box_file = parse_box_file(upload.getvalue(), upload.name)
    except BoxFileError as exc:
        container.error(str(exc))
        return None
    container.caption(f"{box_file.format}: {box_file.n_boxes} boxes for {len(box_file.by_image)} image(s)"
                      + (f", {box_file.n_problems} line(s) skipped" if box_file.n_problems else ""))
    for message in box_file.messages:
        container.warning(message, icon=":material/warning:")
    return box_file


def colour_mode_picker() -> str:
    return st.segmented_control("Colour boxes by", COLOUR_MODES, default="label", key="colour_by") or "label"


@st.cache_data(max_entries=32, show_spinner=False)
def _photo_for_thumbnails(file: str, sha256: str, width: int):  # sha256: part of the cache key
    from shelf.review import photo_for_thumbnails
    return photo_for_thumbnails(file, width)


def thumbnails(rows: pd.DataFrame) -> list[str | None]:
    """Data-URI thumbnails of the rows' regions; each photo is decoded once (and cached across reruns)."""
    from shelf.review import thumbnail_uri
    uris = []
    for r in rows.itertuples():
        photo = _photo_for_thumbnails(r.file, r.sha256, int(r.width))
        uris.append(thumbnail_uri(photo[0], photo[1], (r.x1, r.y1, r.x2, r.y2)) if photo else None)
    return uris


def scope_filters(detections: pd.DataFrame, key: str):
    """Store, aisle, date and category pickers shared by Tallies and Review. Returns a TallyFilter."""
    from shelf.categories import RETAIL_CATEGORIES
    from shelf.tally import TallyFilter
    c1, c2, c3, c4 = st.columns(4)
    stores = c1.multiselect("Stores", sorted(set(detections["store"]) - {""}), key=f"{key}_stores",
                            placeholder="All stores")
    aisles = c2.multiselect("Aisles", sorted(set(detections["aisle"]) - {""}), key=f"{key}_aisles",
                            placeholder="All aisles")
    categories = c3.multiselect("Categories", RETAIL_CATEGORIES, key=f"{key}_categories",
                                placeholder="All categories")
    dates = sorted(detections["captured_on"].dropna().unique())
    picked = c4.date_input("Dates", value=(dates[0], dates[-1]), key=f"{key}_dates", format="YYYY-MM-DD") \
        if dates else ()
    date_from, date_to = (tuple(picked) + (None, None))[:2] if picked else (None, None)
    if date_from is not None and date_to is None:
        date_to = date_from  # a half-picked range means that one day
    return TallyFilter(stores, aisles, date_from, date_to, categories)



def region_comparison(comparisons: list, mode_text: str) -> None:
    """Regions against true boxes: overall figures, a table per photo, and each photo with both sets of boxes."""
    from shelf.evaluation import greedy_matches, summarise
    from shelf.overlay import draw_comparison
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
    table = pd.DataFrame([e.as_row() for e in per_photo]).dropna(axis=1, how="all")
    ratio = {column: st.column_config.NumberColumn(label, format="%.3f") for column, label in
             (("precision", "Precision"), ("recall", "Recall"), ("f1", "F1"), ("ap50", "AP@0.5"),
              ("ap50_95", "AP@0.5:0.95"))}
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "photo": "Photo", "found": "Found", "true": "True", "matched": "Matched", "count_error": "Found − true",
        **ratio})
    st.caption(":blue[**Blue**]: found · :orange[**orange**]: true · tinted: no match (a false box or a missed "
               "product)")
    for c, e in zip(done, per_photo):
        st.image(draw_comparison(c.preview, c.size, c.found, c.truth, greedy_matches(c.found, c.truth)),
                 caption=f"{c.name} · found {e.found}, true {e.truth}, precision {e.precision:.2f}, "
                         f"recall {e.recall:.2f}", width="stretch")
        for note in c.notes:
            st.caption(f":material/info: {md_escape(note)}")
