"""Recognize: upload shelf photos or product crops (or take one), classify, store, show top-k."""
import datetime as dt

import pandas as pd
import streamlit as st

from shelf import ui
from shelf.images import UPLOAD_EXTENSIONS
from shelf.pipeline import Upload, recognize
from shelf.store import Context

ui.use_router()
st.title("Recognize")
loaded = ui.require_model()
if loaded is None:
    st.stop()

left, middle, right, far = st.columns([3, 3, 2, 1])
store_name = left.text_input("Store", key="store", placeholder="e.g. Downtown #12")
aisle = middle.text_input("Aisle", key="aisle", placeholder="e.g. 7 – Beverages")
captured_on = right.date_input("Photo date", value=dt.date.today(), key="captured_on", format="YYYY-MM-DD")
top_k = far.number_input("Top-k", min_value=1, max_value=10, value=3, key="top_k")

files = st.file_uploader("Shelf photos or product crops", type=UPLOAD_EXTENSIONS, accept_multiple_files=True,
                         key="uploads", help="JPEG, PNG, WebP, BMP, GIF, TIFF, HEIC/HEIF or AVIF; up to 50 MB each.")
camera_photo = st.camera_input("Take a photo", key="camera") if st.toggle("Use the camera", key="use_camera") \
    else None
uploads = [Upload(f.name, f.getvalue()) for f in files or []]
if camera_photo is not None:
    uploads.append(Upload(f"camera-{dt.datetime.now():%Y%m%d-%H%M%S}.jpg", camera_photo.getvalue()))

if st.button(f"Recognize {len(uploads)} photo{'s' if len(uploads) != 1 else ''}", type="primary",
             disabled=not uploads, key="recognize"):
    progress = st.progress(0.0, text="Starting …")
    st.session_state["results"] = recognize(
        loaded, ui.store(), uploads, Context(store_name, aisle, captured_on), top_k=int(top_k),
        on_progress=lambda done, total, name: progress.progress(done / total, text=f"{done}/{total} · {name}"))
    progress.empty()

results = st.session_state.get("results", [])
if results:
    stored = [r for r in results if r.ok and not r.already_stored]
    again = [r for r in results if r.ok and r.already_stored]
    failed = [r for r in results if not r.ok]
    st.subheader("Results")
    st.caption(f"{len(stored)} new photo(s) stored · {len(again)} already in the store (shown from it) · "
               f"{len(failed)} could not be read")
    for r in failed:
        st.error(r.error, icon=":material/broken_image:")
    for r in (r for r in results if r.ok):
        with st.container(border=True):
            picture, table = st.columns([1, 3])
            picture.image(r.thumbnail, caption=r.name)
            for region in r.regions:
                best = region.predictions[0]
                table.markdown(f"**{ui.md_escape(best.label)}** · class {best.class_index} · "
                               f"{best.probability:.1%}" + (" · *already stored*" if r.already_stored else ""))
                table.dataframe(
                    pd.DataFrame([{"Rank": p.rank, "Label": p.label, "Class": p.class_index,
                                   "Confidence": 100 * p.probability} for p in region.predictions]),
                    column_config={"Confidence": st.column_config.ProgressColumn(
                        "Confidence", format="%.1f%%", min_value=0, max_value=100)},
                    hide_index=True, width="stretch")
    st.page_link("pages/tallies.py", label="See the tallies", icon=":material/bar_chart:")
