"""The one module of `shelf` that imports Streamlit: cached loaders and small widgets the pages share."""
from __future__ import annotations

import os
import re
import runpy
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st
from sqlalchemy.engine import Engine

from shelf import access, config
from shelf.analytics.tally import tally
from shelf.ingest.overlay import (
    COLOUR_MODES,
    annotated,
    colours,
    draw_legend,
    draw_overlay,
    gap_legend,
    png_bytes,
)
from shelf.serving import proxies, webhooks
from shelf.storage.store import open_store
from shelf.text import percent

if TYPE_CHECKING:  # torch is imported only by the pages that classify (Tallies, Review … open without it)
    from shelf.recognition.model import LoadedModel, WeightsStatus
    from shelf.recognition.pipeline import PhotoResult, RegionResult

MODEL_PAGE = "pages/home.py"
RECENT_PREVIEWS = 10  # photos of a Recognize batch whose preview a session keeps (each up to ~5 MB)
ROUTER = Path(__file__).resolve().parents[2] / "streamlit_app.py"


@st.cache_resource(show_spinner=False)  # model() shows the spinner, from before torch is imported
def _cached_model(backend: str) -> tuple[LoadedModel | None, WeightsStatus, str | None]:
    # Shared by every session and thread: the model is used read-only under inference_mode.
    from shelf.recognition.backends import BackendError, with_backend
    from shelf.recognition.model import load_model
    loaded, status = load_model()
    if loaded is None:
        return None, status, None
    try:
        return with_backend(loaded, backend, store()), status, None
    except BackendError as exc:
        return with_backend(loaded, "onnx"), status, str(exc)


@st.cache_resource(show_spinner=False)
def _cached_store(url: str) -> Engine:
    return webhooks.started_with(open_store(url))  # the task worker: evaluates and delivers store tasks


# ---------------------------------------------------------------------------------------------------------------
# Who is using this session (shelf.access is the role model; every state-changing function checks it again)

TRUSTED_HEADER_ENV = "SHELF_TRUSTED_USER_HEADER"


def auth_configured() -> bool:
    """Sign-in is on when the secrets have an [auth] section (st.login's own configuration)."""
    try:
        return "auth" in st.secrets
    except FileNotFoundError:  # no secrets file at all (StreamlitSecretNotFoundError is one)
        return False


def _refuse(message: str) -> None:
    st.error(message, icon=":material/lock:")
    st.stop()


def _signed_in(email: str, via: str) -> access.Identity:
    try:
        roles = access.load_roles()
    except access.RolesFileError as exc:  # fail closed: nobody gets a role from a file that cannot be read
        _refuse(f"Shelf cannot tell your role: {md_escape(str(exc))}. Ask an administrator to fix the roles file.")
    email = email.strip().lower()
    return access.Identity(email, roles.role_for(email), email, via, roles.store_for(email))


def sign_in_screen() -> None:
    """The page for a visitor who is not signed in: one button per configured provider; nothing else runs."""
    st.title("Shelf")
    st.markdown("Sign in with your company account to see the shelves. What you may do depends on your role "
                "(viewer, reviewer or admin).")
    auth = st.secrets["auth"]
    providers = [name for name, value in auth.items() if isinstance(value, Mapping)]
    if "client_id" in auth or not providers:
        st.button("Sign in", type="primary", icon=":material/login:", on_click=st.login, key="sign_in")
    for name in providers:
        st.button(f"Sign in with {name}", type="primary", icon=":material/login:", on_click=st.login,
                  args=(name,), key=f"sign_in_{name}")
    st.stop()


def current_identity() -> access.Identity:
    """Who is using this session: without sign-in configured, the local user (everything allowed, as on a
    laptop); behind an authenticating proxy (SHELF_TRUSTED_USER_HEADER), the e-mail in that header; with [auth],
    the signed-in user (not signed in: the sign-in screen, and the run stops). Roles come from SHELF_ROLES_FILE."""
    header = os.environ.get(TRUSTED_HEADER_ENV, "").strip()
    if header:  # believed only from the proxies (shelf.serving.proxies); checked on every run, before anything
        problem = proxies.header_problem(os.environ, st.get_option("server.address"), header, st.context)
        if problem:
            _refuse(md_escape(problem))
        email = (st.context.headers.get(header) or "").strip()
        if not email:
            _refuse(f"No {md_escape(header)} header came with this request: this Shelf server takes the user from "
                    "its authenticating proxy. Open Shelf through the proxy.")
        return _signed_in(email, "header")
    if not auth_configured():
        return access.LOCAL
    if not st.user.is_logged_in:
        sign_in_screen()
    email = st.user.get("email")
    if not email or st.user.get("email_verified") is False:
        _refuse("Your sign-in provider did not vouch for an e-mail address, and Shelf gives roles by e-mail. "
                "Sign out and use a company account.")
    return _signed_in(str(email), "oidc")


def shows(action: str) -> bool:
    """Whether pages offer `action` to this session's user. Only what a page shows; the functions check again."""
    return current_identity().may(action)


def require_role(action: str) -> None:
    """For a page whose whole purpose is `action`: a plain note, and nothing else, for a role without it."""
    me = current_identity()
    if not me.may(action):
        st.info(f"You are signed in as a {me.role}; this page needs the {access.ACTIONS[action]} role. Ask an "
                "administrator if you need it.", icon=":material/lock:")
        st.stop()


def acting_identity(container, label: str, key: str) -> access.Identity | None:
    """Who a change is saved as: the signed-in identity, or without sign-in the name typed into a field shown in
    `container` (None until one is typed)."""
    me = current_identity()
    if me.via != "local":
        container.caption(f"Saved as **{md_escape(me.name)}**")
        return me
    typed = container.text_input(label, key=key, max_chars=100)
    return access.acting(typed) if typed.strip() else None


def account_box(me: access.Identity) -> None:
    """In the sidebar: who is signed in, their role, and the sign-out button (there is none without sign-in)."""
    if me.via == "local":
        return
    with st.sidebar:
        st.caption(f"Signed in as **{md_escape(me.name)}** · {me.role}" + (f" · store {md_escape(me.store)}"
                                                                          if me.store else ""))
        if me.via == "oidc":
            st.button("Sign out", icon=":material/logout:", on_click=st.logout, key="sign_out")


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
    """The model, loaded once per server process. The spinner covers importing torch too (seconds, on a page's
    first visit); it shows only when that takes a moment."""
    with st.spinner("Loading ResNet-18 …", show_time=True):
        from shelf.recognition.backends import chosen_backend
        loaded, status, _ = _cached_model(chosen_backend(store()))
    return loaded, status


def backend_problem() -> str | None:
    """Why the chosen backend is not the one running (fast mode without calibration data), if it is not."""
    from shelf.recognition.backends import chosen_backend
    return _cached_model(chosen_backend(store()))[2]


def reload_model() -> None:
    _cached_model.clear()


def store() -> Engine:
    return _cached_store(config.database_url())


@st.cache_data(ttl=60, max_entries=8, show_spinner=False)
def _facets(url: str, newest_photo: int | None):  # newest_photo: part of the key, so a new photo shows at once
    from shelf.analytics.report import facets
    return facets(_cached_store(url))


def facets_or_stop():
    """What the filters can choose from (shelf.analytics.report.Facets; cached per newest photo, and for a minute at
    most, as an edited photo context changes them too); on an empty store, a pointer to Recognize instead of the
    rest of the page."""
    from shelf.analytics.report import newest_photo
    found = _facets(config.database_url(), newest_photo(store()))
    if not found.photos:
        st.info("Nothing is stored yet. Recognize some photos first.", icon=":material/info:")
        st.page_link("pages/recognize.py", label="Go to Recognize", icon=":material/photo_camera:")
        st.stop()
    return found


def md_escape(text: str) -> str:
    """Escape user-provided text (file names, SKU names, messages that quote them) before it goes into Markdown:
    links, images and HTML stay text, and `&` too, so `&#47;` or `&#x202E;` show as typed, never as the
    character they name."""
    return re.sub(r"([\\`*_{}\[\]()<>#+\-.!|~$&])", r"\\\1", text)


def table(frame: pd.DataFrame, *, editable: bool = False, **options):
    """st.dataframe (or st.data_editor) for a table holding text users typed or uploaded: its text cells are made
    inert the way CSV exports are, so the toolbar's "Download as CSV" gives no cell a spreadsheet would run as a
    formula. Returns what Streamlit's call returns (the edited frame for an editor)."""
    from shelf.text import inert_frame
    return (st.data_editor if editable else st.dataframe)(inert_frame(frame), **options)


def keyed_editor(frame: pd.DataFrame, *, ids: str, column: str, state: str, **options) -> dict:
    """A data editor for one page of rows whose pending edits of `column` are kept by the row's id (`ids`) in
    session state across pages, searches and filters — never by row number, which would move an edit to whatever
    row takes that place. Returns every pending edit, {id: value}, shown or not."""
    import hashlib

    from shelf.analytics.review import merge_page_edits
    pending = st.session_state.setdefault(state, {})
    generation = st.session_state.get(f"{state}_generation", 0)
    signature = hashlib.sha256(repr((frame[ids].tolist(), generation)).encode()).hexdigest()[:12]
    base = frame[column].tolist()
    shown = frame.assign(**{column: [pending.get(int(i), b) for i, b in zip(frame[ids], base)]})
    st.session_state[f"{state}_editor"] = key = f"{state}_editor_{signature}"
    edited = table(shown, editable=True, key=key, **options)
    st.session_state[state] = merge_page_edits(pending, frame[ids].tolist(), base, edited[column].tolist())
    return st.session_state[state]


def clear_edits(state: str) -> None:
    """Forget the pending edits of a keyed_editor (saved or discarded); its editor starts clean."""
    st.session_state[state] = {}
    st.session_state[f"{state}_generation"] = st.session_state.get(f"{state}_generation", 0) + 1


def box_file(upload):
    """The uploaded box file, parsed once per content: reruns (any click on the page) reuse the parse instead of
    repeating it. Raises BoxFileError like parse_box_file."""
    import hashlib

    from shelf.ingest.boxfiles import BoxFileError, parse_box_file
    data = upload.getvalue()
    key = (hashlib.sha256(data).hexdigest(), upload.name)
    cached = st.session_state.get("_parsed_box_file")
    if cached is None or cached[0] != key:
        try:
            parsed = parse_box_file(data, upload.name)
        except BoxFileError as exc:  # kept too: a refused file is not parsed again on every click either
            parsed = exc
        cached = st.session_state["_parsed_box_file"] = (key, parsed)
    if isinstance(cached[1], Exception):
        raise cached[1]
    return cached[1]


def weights_banner(loaded: LoadedModel | None) -> None:
    """On pages that classify: a banner while the weights are not the verified ImageNet file."""
    if loaded is not None and not loaded.weights.verified:
        st.warning(f"**Demo weights in use — {loaded.weights.kind}.** Labels below are not ImageNet predictions; "
                   "every result stored now is marked unverified in its provenance.", icon=":material/warning:")


def stored_results_banner() -> None:
    """On pages that report stored results: a banner when some came from weights that are not the verified
    ImageNet file (read from the runs' provenance: no model needs loading)."""
    from shelf.analytics.report import unverified_runs
    unverified, total = unverified_runs(store())
    if unverified:
        st.warning(f"**Results from demo weights are included** ({unverified} of {total} recognition runs used "
                   "weights that are not the verified ImageNet file, e.g. an untrained model): their labels are not "
                   "ImageNet predictions. Each run's provenance says which.", icon=":material/warning:")


def require_model(link_to_model_page: bool = True) -> LoadedModel | None:
    """The loaded model (with the demo-weights banner when it applies), or a plain explanation of what to do when
    there is none."""
    from shelf.recognition.model import HOW_TO_GET_WEIGHTS
    loaded, status = model()
    weights_banner(loaded)
    if loaded is None:
        st.error(f"**The ResNet-18 weights are not available**, so nothing can be recognized yet. "
                 f"{md_escape(status.problem or '')}", icon=":material/error:")
        st.markdown(HOW_TO_GET_WEIGHTS)
        if link_to_model_page:
            st.page_link(MODEL_PAGE, label="Import a weights file on the Home & model page",
                         icon=":material/upload:")
    return loaded


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


def parsed_box_file(upload, container=st):
    """An uploaded box file, parsed (once per content, see box_file), with its format and problems shown in
    `container`; None if none or unusable."""
    from shelf.ingest.boxfiles import BoxFileError
    if upload is None:
        return None
    try:
        parsed = box_file(upload)
    except BoxFileError as exc:
        container.error(md_escape(str(exc)))
        return None
    container.caption(f"{parsed.format}: {parsed.n_boxes} boxes for {len(parsed.by_image)} image(s)"
                      + (f", {parsed.n_problems} line(s) skipped" if parsed.n_problems else ""))
    for message in parsed.messages:
        container.warning(md_escape(message), icon=":material/warning:")
    return parsed


def colour_mode_picker() -> str:
    return st.segmented_control("Color boxes by", COLOUR_MODES, default="label", key="colour_by") or "label"


@st.cache_data(max_entries=32, show_spinner=False)
def _photo_for_thumbnails(file: str, sha256: str, width: int):  # sha256: part of the cache key
    from shelf.analytics.review import photo_for_thumbnails
    return photo_for_thumbnails(file, width)


def thumbnails(rows: pd.DataFrame) -> list[str | None]:
    """Data-URI thumbnails of the rows' regions; each photo is decoded once (and cached across reruns)."""
    from shelf.analytics.review import thumbnail_uri
    uris = []
    for r in rows.itertuples():
        photo = _photo_for_thumbnails(r.file, r.sha256, int(r.width))
        uris.append(thumbnail_uri(photo[0], photo[1], (r.x1, r.y1, r.x2, r.y2)) if photo else None)
    return uris


def scope_filters(facets, key: str):
    """Store, aisle, date and category pickers shared by Tallies and Review. Returns a TallyFilter."""
    from shelf.analytics.tally import TallyFilter
    from shelf.labels import RETAIL_CATEGORIES
    c1, c2, c3, c4 = st.columns([2, 2, 2, 3])  # the date range needs the most room
    stores = c1.multiselect("Stores", [s for s in facets.stores if s], key=f"{key}_stores", placeholder="All stores")
    aisles = c2.multiselect("Aisles", [a for a in facets.aisles if a], key=f"{key}_aisles", placeholder="All aisles")
    categories = c3.multiselect("Categories", RETAIL_CATEGORIES, key=f"{key}_categories",
                                placeholder="All categories")
    picked = c4.date_input("Dates", value=(facets.first_date, facets.last_date), key=f"{key}_dates",
                           format="YYYY-MM-DD") if facets.first_date else ()
    date_from, date_to = (tuple(picked) + (None, None))[:2] if picked else (None, None)
    if date_from is not None and date_to is None:
        date_to = date_from  # a half-picked range means that one day
    return TallyFilter(stores, aisles, date_from, date_to, categories)


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
