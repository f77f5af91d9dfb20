"""Home & model: what Shelf does, which weights it runs, importing weights from the browser."""
import os

import sqlalchemy as sa
import streamlit as st
import torch
import torchvision

from shelf import batches, config, model, report, store, ui

ui.use_router()
st.title("Shelf")
st.markdown(
    "Recognize products on store shelves with a TorchVision **ResNet-18** (ImageNet-1K), on this machine's CPU.\n"
    "1. **Recognize** — drop shelf photos or product crops (or take a photo), say which store and aisle.\n"
    "2. Check the top predictions and their confidence; everything is stored.\n"
    "3. **Tallies** — counts per label, filtered by confidence, store, aisle and date; download them as CSV."
)
st.page_link("pages/recognize.py", label="Start recognizing photos", icon=":material/arrow_forward:")

st.header("Model")
loaded, status = ui.model()
if message := st.session_state.pop("weights_message", None):
    st.info(message, icon=":material/upload:")
if loaded is not None:
    w = loaded.weights
    (st.success if w.verified else st.warning)(f"**{w.kind}**", icon=":material/memory:")
    st.markdown(
        f"- **Source:** {w.source} — `{w.path}`\n"
        f"- **sha256:** `{w.sha256}`\n"
        f"- **Categories:** {len(loaded.categories)} ImageNet classes (kept by class index and name)\n"
        f"- **Runs on:** CPU, {torch.get_num_threads()} threads · torch {torch.__version__} · "
        f"torchvision {torchvision.__version__}")
else:
    ui.require_model(link_to_model_page=False)
    if status.tried:
        with st.expander("Where Shelf looked"):
            st.markdown("\n".join(f"- {ui.md_escape(line)}" for line in status.tried))

if loaded is not None:
    from shelf import backends
    st.subheader("Inference backend")
    current = backends.chosen_backend(ui.store())
    choice = st.radio("Backend", list(backends.BACKENDS), index=list(backends.BACKENDS).index(current),
                      format_func=backends.BACKENDS.get, horizontal=True, key="backend_choice",
                      disabled=os.environ.get("SHELF_BACKEND") in backends.BACKENDS,
                      help="Faithful backends give the same probabilities as torchvision's eager model (within "
                           "1e-4). Fast mode quantises the convolutions to int8: about 2.5× faster here, not "
                           "faithful; it is calibrated on crops from the store, and every run records it.")
    if os.environ.get("SHELF_BACKEND") in backends.BACKENDS:
        st.caption(f"Set by the server's SHELF_BACKEND={os.environ['SHELF_BACKEND']}.")
    elif choice != current:
        store.set_setting(ui.store(), backends.BACKEND_SETTING, choice)
        ui.reload_model()
        st.rerun()
    if problem := ui.backend_problem():
        st.warning(f"{problem}. Running the faithful ONNX Runtime backend meanwhile.")
    st.caption(f"Running: **{loaded.backend_name}**"
               + (" — fast mode: results are not faithful to the fp32 model; runs record it." if
                  getattr(loaded.backend, "kind", "") == "int8" else ""))
    if st.button("Check fidelity against eager fp32 on stored crops", key="check_fidelity"):
        with st.spinner("Running both on up to 64 stored crops …"):
            report = backends.check_fidelity(loaded, ui.store())
        if report is None:
            st.info("No stored regions to check yet.")
        else:
            st.success(f"{report['backend']} on {report['crops']} stored crops: max |Δp| "
                       f"{report['max_prob_diff']:.1e}, top-1 agreement {report['top1_agreement']:.1%} "
                       "with eager fp32.")
    if bench := backends.last_benchmark():
        st.caption(f"Last `python -m shelf bench` on this machine ({bench['at']}), crops/s and ratio to the seed "
                   "pipeline:")
        st.dataframe([{"Pipeline": r["pipeline"], "Crops/s": round(r["crops_per_s"], 1),
                       "× seed": round(r["speedup"], 2), "p50 per photo (s)": round(r["p50_s"], 2),
                       "Top-1 agreement": f"{r['top1_agreement']:.1%}", "Max |Δp|": f"{r['max_prob_diff']:.1e}"}
                      for r in bench["rows"]], hide_index=True, width="stretch")

with st.expander("Import a weights file", expanded=loaded is None):
    st.caption(f"The official file is `{model.OFFICIAL_FILENAME}` (sha256 starting `{model.OFFICIAL_HASH_PREFIX}`). "
               "It is checked (safe loader, keys and shapes) before it is kept.")
    upload = st.file_uploader("Weights file (.pth)", type=["pth", "pt", "bin"], key="weights_upload")
    if upload is not None and st.button("Import weights", type="primary"):
        try:
            info = model.import_weights(upload.getvalue(), upload.name)
        except model.WeightsError as exc:
            st.error(str(exc))
        else:
            message = f"Imported weights: {info.kind}, sha256 `{info.sha256[:16]}…`."
            if config.weights_file_from_env():
                message += " Note: SHELF_WEIGHTS is set on the server and takes precedence over the imported file."
            elif not info.verified and not config.allow_unverified_weights():
                message += (" This is not the ImageNet file; Shelf uses it only when the server runs with "
                            "SHELF_ALLOW_UNVERIFIED_WEIGHTS=1.")
            st.session_state["weights_message"] = message
            ui.reload_model()
            st.rerun()
    if loaded is None and not config.offline():
        if st.button("Download the ImageNet weights (45 MB)"):
            with st.spinner("Downloading …"):
                try:
                    model.download_weights()
                except (OSError, model.WeightsError) as exc:
                    st.error(f"Download failed: {exc}")
                else:
                    ui.reload_model()
                    st.rerun()

st.header("Store")
engine = ui.store()
counts = report.overview(engine)
url = sa.engine.make_url(config.database_url()).render_as_string(hide_password=True)
st.caption(f"Database `{url}` · data folder `{config.data_dir()}` · process {os.getpid()}")
c1, c2, c3, c4 = st.columns(4)
c1.metric("Photos", f"{counts.photos:,}")
c2.metric("Regions", f"{counts.regions:,}", help="Current product regions: what the tallies count.")
c3.metric("Corrected by reviewers", f"{counts.corrected:,}")
c4.metric("Recognition runs", f"{counts.runs:,}")

st.header("Batches")
BATCH_REFRESH_S = 2


@st.fragment(run_every=BATCH_REFRESH_S if batches.any_running(batches.recent_batches(engine)) else None)
def batch_progress():
    """Running and recent `python -m shelf batch` runs; refreshes on its own while one runs."""
    recent = batches.recent_batches(ui.store())
    if recent.empty:
        st.caption("No batches yet. `python -m shelf batch FOLDER` recognizes a whole archive (see the README).")
        return
    for row in recent[recent["state"].isin([batches.RUNNING, "stalled"])].itertuples():
        stalled = " — no news for a while: stalled, or its driver was stopped" if row.state == "stalled" else ""
        st.progress(float(row.progress), text=ui.md_escape(batches.progress_line(row)) + stalled)
    st.dataframe(batches.batch_table(recent), hide_index=True, width="stretch", column_config={
        "Progress": st.column_config.ProgressColumn("Progress", min_value=0.0, max_value=1.0, format="percent"),
        "Started": st.column_config.DatetimeColumn("Started", format="YYYY-MM-DD HH:mm")})
    if not batches.any_running(recent) and st.session_state.get("batch_running"):
        st.session_state["batch_running"] = False
        st.rerun()  # the last one finished: redraw the page so this block stops refreshing
    st.session_state["batch_running"] = batches.any_running(recent)


batch_progress()
