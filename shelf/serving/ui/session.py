"""Session-wide helpers for the pages: sign-in and roles, the cached model and store, tables, banners, filters."""
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
from shelf.ingest.overlay import (
    COLOUR_MODES,
)
from shelf.serving import proxies, webhooks
from shelf.storage.store import open_store

if TYPE_CHECKING:  # torch is imported only by the pages that classify (Tallies, Review … open without it)
    from shelf.recognition.model import LoadedModel, WeightsStatus

MODEL_PAGE = "pages/home.py"
RECENT_PREVIEWS = 10  # photos of a Recognize batch whose preview a session keeps (each up to ~5 MB)
ROUTER = Path(__file__).resolve().parents[3] / "streamlit_app.py"


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
