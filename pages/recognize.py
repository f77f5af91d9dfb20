"""Recognize: upload shelf photos or product crops (or take one), split into regions, classify, store, show."""
import datetime as dt
import hashlib

import streamlit as st

from shelf.analytics.tasks import evaluate_pending
from shelf.ingest import tuning
from shelf.ingest.boxfiles import BOX_FILE_EXTENSIONS, MAX_BOX_FILE_MB
from shelf.ingest.images import MAX_UPLOAD_MB, UPLOAD_EXTENSIONS
from shelf.ingest.regions import (
    MAX_STORED_TOP_K,
    MAX_TILES_ACROSS,
    STORED_LIMITS,
    RegionMode,
)
from shelf.recognition import catalog, detector
from shelf.recognition.pipeline import Upload, compare_regions, recognize
from shelf.serving import ui
from shelf.storage import profiles
from shelf.storage.store import Context
from shelf.text import clean_text

ui.use_router()
st.title("Recognize")
ui.require_role("recognize")
loaded = ui.require_model()
if loaded is None:
    st.stop()
if getattr(loaded.backend, "kind", "") == "int8":
    st.info("Fast mode (int8) is on: quicker, not faithful to the fp32 model; each run records it. Change it on "
            "the Home & model page.", icon=":material/bolt:")
elif getattr(loaded.backend, "kind", "") == "bf16":
    st.info("Balanced mode (bfloat16) is on: close to the fp32 model, not the same; each run records it. Change it "
            "on the Home & model page.", icon=":material/balance:")

left, middle, right, far = st.columns([3, 3, 2, 1])
store_name = left.text_input("Store", key="store", placeholder="e.g. Downtown #12")
aisle = middle.text_input("Aisle", key="aisle", placeholder="e.g. 7 – Beverages")
captured_on = right.date_input("Photo date", value=dt.date.today(), key="captured_on", format="YYYY-MM-DD")
top_k = far.number_input("Top-k", min_value=1, max_value=MAX_STORED_TOP_K, value=3, key="top_k",
                         help=f"Predictions kept per region. {STORED_LIMITS}.")

MODES = {"whole": "Whole photo", "auto": "Auto (shelf → facings)", "grid": "Grid of tiles",
         "boxes": "Boxes from a file"}
detectors = detector.imported_detectors()
if detectors:
    MODES["detector"] = "Detector (imported)"
mode_col, options_col, crop_col = st.columns([2, 3, 2])
kind = mode_col.selectbox("Regions", list(MODES), format_func=MODES.get, key="region_kind",
                          help="How a photo is split into products before each part is classified. Whole photo: "
                               "one product crop, classified as it is. Auto: finds the shelf rows and the facings on "
                               "them. Grid: equal tiles. Boxes: the boxes of a SKU-110K, COCO or YOLO file. "
                               "Detector: an imported YOLO product detector.")
box_file, mode, chosen_detector = None, RegionMode(kind), None
if kind == "grid":
    rows_col, cols_col, overlap_col = options_col.columns(3)
    mode = RegionMode("grid", rows=rows_col.number_input("Rows", 1, 30, 4, key="grid_rows"),
                      cols=cols_col.number_input("Columns", 1, 30, 8, key="grid_cols"),
                      overlap=overlap_col.slider("Overlap", 0.0, 0.45, 0.0, 0.05, key="grid_overlap"))
elif kind == "boxes":
    upload = options_col.file_uploader("Box file: SKU-110K CSV, COCO JSON or YOLO txt", type=BOX_FILE_EXTENSIONS,
                                       key="box_file", max_upload_size=MAX_BOX_FILE_MB,
                                       help="Boxes are matched to photos by file name (YOLO: photo.jpg ↔ photo.txt).")
    box_file = ui.parsed_box_file(upload, options_col)
    if box_file is not None:
        mode = RegionMode("boxes", source=box_file.source)
elif kind == "detector":
    chosen_detector = options_col.selectbox("Detector", detectors, key="detector_choice",
                                            format_func=lambda d: f"{d.name} · {d.sha256[:12]}")
    conf_col, iou_col, tiles_col = options_col.columns(3)
    mode = RegionMode("detector", source=chosen_detector.sha256,
                      conf=conf_col.slider("Min. score", 0.05, 0.95, 0.25, 0.05, key="detector_conf"),
                      iou=iou_col.slider("NMS IoU", 0.3, 0.9, 0.6, 0.05, key="detector_iou"),
                      tiles=tiles_col.selectbox("Tiles", ["auto", "off", *map(str, range(2, MAX_TILES_ACROSS + 1))],
                                                key="detector_tiles", help="auto: tiles when products are small in "
                                                "the model's input; N: N overlapping tiles along the longer side."))
elif kind == "auto":
    stores_profiles = profiles.store_profile_names(ui.store())
    this_store = stores_profiles.get(clean_text(store_name), profiles.DEFAULT)
    choices = ["", profiles.DEFAULT, *(p.name for p in profiles.list_profiles(ui.store()))]
    profile_name = options_col.selectbox(
        "Region profile", choices, key="region_profile",
        format_func=lambda n: f"This store's ({this_store})" if n == "" else "Default (built in)"
        if n == profiles.DEFAULT else n,
        help="auto's settings. A profile is tuned from labelled photos of a kind of shelf (Compare with these "
             "boxes → Tune). 'This store's' uses the profile chosen for the store typed above, else the default.")
    mode = RegionMode("auto", source=profile_name)
    if profile_name and profile_name != this_store and ui.shows("manage_profiles") and store_name.strip():
        if options_col.button(f"Use {profile_name} for store {ui.md_escape(clean_text(store_name))} from now on",
                              key="set_store_profile", help="auto then uses it for this store's photos, also in "
                                                            "batches with --layout"):
            profiles.set_store_profile(ui.store(), store_name, profile_name, by=ui.current_identity())
            st.rerun()
    options_col.caption("Finds the shelf rows, then the facings at the product edges along each row (uniform packs "
                        "also by their rhythm); empty stretches are kept as gaps (never counted as facings: they "
                        "give the empty shelf share). Needs two or more shelf rows in view; otherwise the whole "
                        "photo is classified.")
crop_mode = crop_col.radio("Crop preprocessing", ["center", "pad"], key="crop_mode", horizontal=True,
                           format_func={"center": "Center crop (ImageNet)", "pad": "Pad to square"}.get,
                           help="Center crop is the model's own preprocessing. Pad to square keeps tall "
                                "products (bottles) whole instead of cutting their top and bottom.")

skus = catalog.skus_frame(ui.store())
use_catalog = st.toggle(f"Name SKUs from the catalog ({len(skus)} SKU{'' if len(skus) == 1 else 's'})",
                        value=not skus.empty,
                        disabled=skus.empty, key="use_catalog",
                        help="Each region is also matched by embedding similarity against the SKU catalog's "
                             "reference photos; the ImageNet top-k stays beside it.")

read_prices = st.checkbox("Read shelf-edge prices", key="read_prices",
                          help="Also find the price labels on the shelf edges (under each row of products, or above "
                               "hanging ones), read them with OCR and tie each to the facings it prices: shown on "
                               "the photo, in the region inspector and Review, checked against the planogram's "
                               "prices on Compliance. Adds about a second per 12 MP photo.")

files = st.file_uploader("Shelf photos or product crops", type=UPLOAD_EXTENSIONS, accept_multiple_files=True,
                         key="uploads", max_upload_size=MAX_UPLOAD_MB,
                         help=f"JPEG, PNG, WebP, BMP, GIF, TIFF, HEIC/HEIF or AVIF; up to {MAX_UPLOAD_MB} MB each.")
camera_photo = st.camera_input("Take a photo", key="camera") if st.toggle("Use the camera", key="use_camera") \
    else None
uploads = [Upload(f.name, f.getvalue()) for f in files or []]
if camera_photo is not None:
    uploads.append(Upload(f"camera-{dt.datetime.now():%Y%m%d-%H%M%S}.jpg", camera_photo.getvalue()))

ready = bool(uploads) and (kind != "boxes" or box_file is not None)


def run(chosen: list[Upload], again: bool = False) -> list:
    """Recognize `chosen` with the settings above, showing which file is being worked on."""
    progress = st.progress(0.0, text=f"0/{len(chosen)} done · starting …")

    def show(done: int, total: int, name: str) -> None:
        progress.progress(done / total, text=f"{done}/{total} done" + (f" · recognizing {ui.md_escape(name)} …"
                                                                          if name else ""))

    index = catalog.load_index(ui.store(), loaded, crop_mode) if use_catalog and not skus.empty else None
    results = recognize(
        loaded, ui.store(), chosen, Context(store_name, aisle, captured_on), region_mode=mode, top_k=int(top_k),
        crop_mode=crop_mode, box_file=box_file, catalog=index, catalog_threshold=catalog.get_threshold(ui.store()),
        detector=chosen_detector, on_progress=show, previews=ui.RECENT_PREVIEWS, again=again,
        by=ui.current_identity(), prices=read_prices)
    progress.empty()
    evaluate_pending(ui.store())  # store tasks from these photos (the Tasks page; webhooks from the task worker)
    return results


if st.button(f"Recognize {len(uploads)} photo{'s' if len(uploads) != 1 else ''}", type="primary",
             disabled=not ready, key="recognize"):
    st.session_state["results"] = run(uploads)
elif kind == "boxes" and box_file is None and uploads:
    st.caption("Add a box file to recognize with imported boxes.")

with st.expander("Compare with these boxes: measure the regions against a labelled file"):
    truth_upload = st.file_uploader("True boxes: SKU-110K CSV, COCO JSON or YOLO txt, matched to photos by name",
                                    type=BOX_FILE_EXTENSIONS, key="truth_file",
                                    max_upload_size=MAX_BOX_FILE_MB)
    truth = ui.parsed_box_file(truth_upload)
    if st.button("Compare regions with these boxes", disabled=not (ready and truth), key="compare",
                 help="Finds the regions of each photo with the mode above and matches them to the true boxes. "
                      "Nothing is classified or stored."):
        with st.spinner("Finding regions …"):
            profile = profiles.profile_for(ui.store(), mode.source, store_name) if kind == "auto" \
                else profiles.DEFAULT_PROFILE  # other modes' source is a detector or a box file, not a profile
            st.session_state["comparison"] = (mode.text, compare_regions(uploads, mode, truth, box_file,
                                                                         chosen_detector, with_preview=True,
                                                                         auto_params=profile.params))
    if ui.shows("manage_profiles") and st.button(
            "Tune from these photos", disabled=not (uploads and truth), key="tune",
            help="Searches auto's settings for the best F1 at IoU 0.5 on these photos, and measures the result "
                 "honestly: each photo is scored with settings tuned on the others. Takes a few minutes."):
        items, problems = tuning.labelled_photos(((u.name, u.data) for u in uploads), truth)
        for problem in problems:
            st.warning(ui.md_escape(problem), icon=":material/warning:")
        if items:
            bar = st.progress(0.0, text="Tuning …")
            total, done = tuning.evaluations(len(items)), [0]

            def step() -> None:
                done[0] += 1
                bar.progress(min(1.0, done[0] / total), text=f"Tuning … {done[0]}/{total} trials")
            st.session_state["tuned"] = tuning.tune(items, progress=step)
            bar.empty()
if tuned := st.session_state.get("tuned"):
    st.subheader("Tuned region profile")
    st.code(tuning.report(tuned), language=None)
    name_col, save_col = st.columns([3, 1])
    profile_name = name_col.text_input("Save as profile", key="tuned_name", placeholder="e.g. beverages-aisle")
    if save_col.button("Save profile", key="save_profile", disabled=not profile_name.strip()):
        try:
            saved = profiles.save_profile(ui.store(), profile_name.strip(), tuned.params, tuned.figures(),
                                          by=ui.current_identity())
            st.success(f"Saved region profile {ui.md_escape(saved.label)}: pick it under Regions → Auto, or make it "
                       "a store's profile there.", icon=":material/check:")
        except profiles.ProfileError as exc:
            st.error(ui.md_escape(str(exc)))
if comparison := st.session_state.get("comparison"):
    st.subheader("Regions vs true boxes")
    ui.region_comparison(comparison[1], comparison[0])

results = st.session_state.get("results", [])
if results:
    again = [r for r in results if r.ok and r.already_stored]
    skipped = [r for r in results if r.skipped]
    failed = [r for r in results if not r.ok and not r.skipped]
    st.subheader("Results")
    colour_by = ui.colour_mode_picker() if any(len(r.regions) > 1 for r in results) else "label"
    counts = [(sum(r.ok and not r.already_stored and not r.recognized_again for r in results), "new photo(s) stored"),
              (sum(r.recognized_again for r in results), "recognized again"),
              (len(again), "already in the store (shown from it)"),
              (len(skipped), "skipped (no boxes for them in the box file)"), (len(failed), "could not be read")]
    st.caption(" · ".join(f"{n} {what}" for n, what in counts if n or what == "new photo(s) stored"))
    stored_before = {r.sha256 for r in again}
    to_redo = [u for u in uploads if hashlib.sha256(u.data).hexdigest() in stored_before]
    if to_redo and ui.shows("edit_photo"):
        if st.button(f"Recognize the {len(to_redo)} stored photo{'s' if len(to_redo) != 1 else ''} again with "
                     "these settings", key="recognize_again", icon=":material/refresh:", disabled=not ready,
                     help="A new run with the regions mode, crop, catalog, top-k and store/aisle/date above. Its "
                          "regions replace the photo's previous ones in Review, Tallies and exports; the old "
                          "ones stay in the store as history, and the run's provenance says so."):
            redone = {r.sha256: r for r in run(to_redo, again=True) if r.ok}
            st.session_state["results"] = [redone.get(r.sha256, r) for r in results]
            st.rerun()
    for r in skipped:
        st.info(ui.md_escape(r.error), icon=":material/skip_next:")
    for r in failed:
        st.error(ui.md_escape(r.error), icon=":material/broken_image:")
    for r in (r for r in results if r.ok):
        ui.photo_result(r, colour_by, dict(zip(skus["id"], skus["name"])))
    st.page_link("pages/tallies.py", label="See the tallies", icon=":material/bar_chart:")
ui.confirm_photo_deletion("results")
