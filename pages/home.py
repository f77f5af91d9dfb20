"""Home & model: what Shelf does, which weights it runs, importing weights from the browser."""
import os

import pandas as pd
import streamlit as st

from shelf import access, config
from shelf.analytics import report
from shelf.recognition import detector
from shelf.serving import tokens, ui
from shelf.storage import batches

DATABASE_KINDS = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}

ui.use_router()
me = ui.current_identity()
st.title("Shelf")
if me.via == "local":
    st.caption(":material/person: Single-user mode: no sign-in is configured, so whoever opens Shelf may do "
               "everything. The README says how to add sign-in and roles.")
st.markdown(
    "Recognize products on store shelves with a TorchVision **ResNet-18** (ImageNet-1K), on this machine's CPU.\n"
    "1. **Recognize** — drop shelf photos or product crops (or take a photo), say which store and aisle.\n"
    "2. Check the top predictions and their confidence; everything is stored.\n"
    "3. **Tallies** — counts per label, filtered by confidence, store, aisle and date; download them as CSV."
)
st.page_link("pages/recognize.py", label="Start recognizing photos", icon=":material/arrow_forward:")

st.header("Store")
engine = ui.store()
counts = report.overview(engine)
# Where the data lives (URL, folders, process) is for administrators, once Shelf has sign-in; until then, the kind.
st.caption(f"Database: {DATABASE_KINDS.get(engine.dialect.name, engine.dialect.name)}")
c1, c2, c3, c4 = st.columns(4)
c1.metric("Photos", f"{counts.photos:,}")
c2.metric("Regions", f"{counts.regions:,}", help="Current product regions: what the tallies count.")
c3.metric("Corrected by reviewers", f"{counts.corrected:,}")
c4.metric("Recognition runs", f"{counts.runs:,}")

st.header("Model")
loaded, status = ui.model()  # loads torch and the model (once per server process), with a spinner
ui.weights_banner(loaded)
from shelf.recognition import model  # noqa: E402  (after the page's first paint: it imports torch, which takes seconds)

if message := st.session_state.pop("weights_message", None):
    st.info(message, icon=":material/upload:")
if loaded is not None:
    w = loaded.weights
    if w.verified:  # other weights: the banner above already says which, once
        st.success(f"**{w.kind}**", icon=":material/memory:")
    st.markdown(
        f"- **Source:** {w.source}\n"
        f"- **sha256:** `{w.sha256}`\n"
        f"- **Categories:** {len(loaded.categories)} ImageNet classes (kept by class index and name)\n"
        f"- **Runs on:** {model.runtime_summary()}")
    if status.skipped:
        st.caption(f"Found and not used: {', '.join(status.skipped)}.")
else:
    ui.require_model(link_to_model_page=False)
    if status.tried:
        with st.expander("Where Shelf looked"):
            st.markdown("\n".join(f"- {ui.md_escape(line)}" for line in status.tried))

if loaded is not None:
    from shelf.recognition import backends
    st.subheader("Inference backend")
    bench = backends.last_benchmark()
    fast = next((r for r in (bench or {}).get("rows", []) if "int8" in r["pipeline"]), None)
    offered = backends.offered_backends()
    current = backends.chosen_backend(ui.store(), offered)
    fixed = os.environ.get("SHELF_BACKEND") in offered
    choice = st.radio(
        "Backend", offered, index=offered.index(current),
        format_func=backends.CHOICE_NAMES.get, horizontal=True, key="backend_choice",
        disabled=fixed or not ui.shows("switch_backend"),
        help="Faithful: the same probabilities as torchvision's own PyTorch model (to 1e-4, tested). "
             + ("Balanced runs the convolutions in bfloat16 on this CPU's AMX tiles: faster than faithful, close "
                "to it but not the same (offered only on CPUs with AMX-BF16). " if "bf16" in offered else "")
             + "Fast mode stores the model's convolution weights as 8-bit integers (int8): quicker, not faithful; "
             "it is calibrated once on crops from the store, and every run records which backend made it."
             + (f" Measured here: fast mode {fast['speedup']:.1f}× the seed script's speed, top-1 the same as the "
                f"faithful model on {fast['top1_agreement']:.0%} of crops (`python -m shelf bench`, {bench['at']})."
                if fast else ""))
    if fixed:
        st.caption(f"Set by the server's SHELF_BACKEND={os.environ['SHELF_BACKEND']}.")
    elif choice != current:
        st.info(f"Switching to **{backends.CHOICE_NAMES[choice]}** applies to everyone using this Shelf server, "
                "from their next recognition on.", icon=":material/group:")
        if st.button(f"Switch to {backends.CHOICE_NAMES[choice]}", type="primary", key="switch_backend"):
            backends.switch_backend(ui.store(), choice, by=me)
            ui.reload_model()
            st.rerun()
    if problem := ui.backend_problem():
        st.warning(f"{problem}. Running the faithful ONNX Runtime backend meanwhile.")
    st.caption(f"Running: **{backends.CHOICE_NAMES.get(getattr(loaded.backend, 'kind', 'eager'))}**"
               + (" — results are not faithful to the full-precision model; runs record it." if
                  getattr(loaded.backend, "kind", "") in ("int8", "bf16") else "")
               + (" Its convolutions run on this CPU's AMX int8 tiles." if
                  getattr(getattr(loaded.backend, "path", None), "name", "") == backends.INT8_AMX_FILE else ""))
    calibrated = backends.frozen_calibration(loaded.weights.sha256)
    st.caption(f"Fast mode's calibration: {backends.describe_calibration(calibrated)}. It is kept as it is while "
               "the store grows, so every process loads the same int8 model at once.")
    if calibrated and st.button("Re-take fast mode's calibration from the store", key="recalibrate",
                                help="Takes up to 64 crops spread over the stored photos and rebuilds the int8 "
                                     "model from them (several seconds). Later fast-mode runs use the new model."):
        with st.spinner("Calibrating and quantising …"):
            try:
                backends.with_backend(loaded, "int8", ui.store(), recalibrate=True)
            except backends.BackendError as exc:
                st.error(ui.md_escape(str(exc)))
            else:
                ui.reload_model()
                st.rerun()
    if not model.torch_installed():
        st.caption("The fidelity check runs PyTorch, which this installation (Shelf's serving image) does not have; "
                   "the convert image has it.")
    elif st.button("Check fidelity against PyTorch on stored crops", key="check_fidelity",
                   help="Runs this backend and torchvision's own PyTorch model on up to 64 crops from the store and "
                        "compares their probabilities."):
        with st.spinner("Running both on up to 64 stored crops …"):
            report = backends.check_fidelity(loaded, ui.store())
        if report is None:
            st.info("No stored regions to check yet.")
        else:
            st.success(f"{backends.CHOICE_NAMES[report['kind']]} on {report['crops']} stored crops: probabilities "
                       f"at most {report['max_prob_diff']:.1e} from PyTorch's, the same top-1 label on "
                       f"{report['top1_agreement']:.1%} of them.")
    if bench:
        cpu = f"; {bench['cpu']}" if bench.get("cpu") else ""
        st.caption(f"Last `python -m shelf bench` on this machine ({bench['at']}{cpu}): each pipeline against the "
                   "*seed script* (the one-file app Shelf grew from: each crop preprocessed and classified on its own "
                   "by PyTorch), on generated 12 MP shelf photos with ~40 regions.")
        st.dataframe([{"Pipeline": r["pipeline"], "Crops/s": round(r["crops_per_s"], 1),
                       "Speed vs. seed": round(r["speedup"], 2), "Median s per photo": round(r["p50_s"], 2),
                       "Same top-1": f"{r['top1_agreement']:.1%}",
                       "Largest probability gap": f"{r['max_prob_diff']:.1e}"}
                      for r in bench["rows"]], hide_index=True, width="stretch", column_config={
                          "Speed vs. seed": st.column_config.NumberColumn(help="Crops per second ÷ the seed script's"),
                          "Same top-1": st.column_config.TextColumn(help="Crops whose top-1 label equals the "
                                                                           "full-precision PyTorch model's"),
                          "Largest probability gap": st.column_config.TextColumn(
                              help="Largest difference of any class probability from the PyTorch model's")})

if ui.shows("manage_weights"):
    with st.expander("Import a weights file", expanded=loaded is None):
        st.caption(f"The official file is `{model.OFFICIAL_FILENAME}` (sha256 starting "
                   f"`{model.OFFICIAL_HASH_PREFIX}`). It is checked (safe loader, keys and shapes) before it is kept.")
        upload = st.file_uploader(f"Weights file (.pth, up to {model.MAX_WEIGHTS_MB} MB)",
                                  type=["pth", "pt", "bin"], key="weights_upload",
                                  max_upload_size=model.MAX_WEIGHTS_MB)
        if upload is not None and st.button("Import weights", type="primary"):
            try:
                info = model.import_weights(upload.getvalue(), upload.name, by=me, engine=ui.store())
            except model.WeightsError as exc:
                st.error(ui.md_escape(str(exc)))
            else:
                message = f"Imported weights: {info.kind}, sha256 `{info.sha256[:16]}…`."
                if config.weights_file_from_env():
                    message += (" Note: SHELF_WEIGHTS is set on the server and takes precedence over the imported "
                                "file.")
                elif not info.verified and not config.allow_unverified_weights():
                    message += (" This is not the ImageNet file; Shelf uses it only when the server runs with "
                                "SHELF_ALLOW_UNVERIFIED_WEIGHTS=1, and never instead of the verified file.")
                st.session_state["weights_message"] = message
                ui.reload_model()
                st.rerun()
        if loaded is None and not config.offline():
            if st.button("Download the ImageNet weights (45 MB)"):
                with st.spinner("Downloading …"):
                    try:
                        model.download_weights(by=me, engine=ui.store())
                    except (OSError, model.WeightsError) as exc:
                        st.error(f"Download failed: {ui.md_escape(str(exc))}")
                    else:
                        ui.reload_model()
                        st.rerun()

st.subheader("Product detector")
detectors = detector.imported_detectors()
if message := st.session_state.pop("detector_message", None):
    st.success(message, icon=":material/upload:")
if detectors:
    st.dataframe([{"Detector": d.name, "sha256": d.sha256[:16], "Format": d.format, "Classes": d.classes}
                  for d in detectors], hide_index=True, width="stretch")
    st.caption("Choose *Detector* under Regions on the Recognize page, or `--regions detector` on the command line "
               "(the first one listed).")
else:
    st.caption("No detector imported. A YOLO model trained on dense shelves (e.g. SKU-110K), exported with "
               "`yolo export format=onnx`, finds the facings that are then classified.")
if ui.shows("manage_weights"):
    with st.expander("Import a detector (.onnx)"):
        st.caption("Checked before it is kept: the ONNX checker, a trial run, and the layout — "
                   f"{detector.SUPPORTED}. Uploads here stop at the server's upload limit; import a bigger file "
                   "with `python -m shelf detector import FILE.onnx`.")
        upload = st.file_uploader(f"YOLOv5 / YOLOv8 / YOLO11 ONNX export (up to {model.MAX_WEIGHTS_MB} MB here; "
                                  "larger with `python -m shelf detector import`)", type=["onnx"],
                                  key="detector_upload", max_upload_size=model.MAX_WEIGHTS_MB)
        if upload is not None and st.button("Import detector", key="import_detector"):
            try:
                info = detector.import_detector(upload.getvalue(), upload.name, by=me, engine=ui.store())
            except detector.DetectorError as exc:
                st.error(str(exc))
            else:
                st.session_state["detector_message"] = f"Imported detector {info.name}: {info.format}, sha256 " \
                                                       f"`{info.sha256[:16]}…`."
                st.rerun()

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

TOKEN_ADMIN = ui.current_identity()
if TOKEN_ADMIN.may("manage_tokens"):
    st.header("API tokens")
    st.caption("Store apps and other systems call the HTTP API (`python -m shelf serve`, see the README) with a "
               "token sent as `Authorization: Bearer …`. Viewer: classify, photos and tallies; reviewer: also store "
               "photos. Without any token the API serves this machine only.")
    if secret := st.session_state.pop("new_api_token", None):
        st.success("Copy the token now: Shelf keeps only its hash and cannot show it again.", icon=":material/key:")
        st.code(secret, language=None)
    listed = tokens.list_tokens(engine)
    if listed:
        ui.table(pd.DataFrame([{"Name": t.name, "Role": t.role, "Created": t.created_at,
                                "Revoked": t.revoked_at} for t in listed]), hide_index=True, width="stretch")
    with st.form("new_api_token_form", clear_on_submit=True):
        name = st.text_input("Name", key="token_name", help="Who or what uses it, e.g. store-app or bi-export")
        role = st.selectbox("Role", access.ROLES, key="token_role")
        if st.form_submit_button("Create token", key="create_token"):
            try:
                st.session_state["new_api_token"] = tokens.create_token(engine, name, role, by=TOKEN_ADMIN)
            except tokens.TokenError as exc:
                st.error(ui.md_escape(str(exc)))
            else:
                st.rerun()
    active = [t.name for t in listed if t.active]
    if active:
        victim = st.selectbox("Revoke a token", active, index=None, key="token_to_revoke")
        if st.button("Revoke", key="revoke_token", disabled=victim is None):
            tokens.revoke_token(engine, victim, by=TOKEN_ADMIN)
            st.rerun()
