"""The one module of `shelf` that imports Streamlit: cached loaders and small widgets the pages share."""
from __future__ import annotations

import re
import runpy
from pathlib import Path

import streamlit as st
from sqlalchemy.engine import Engine

from shelf import config
from shelf.model import HOW_TO_GET_WEIGHTS, LoadedModel, WeightsStatus, load_model
from shelf.store import open_store

MODEL_PAGE = "pages/home.py"
ROUTER = Path(__file__).resolve().parents[1] / "streamlit_app.py"


@st.cache_resource(show_spinner="Loading ResNet-18 …")
def _cached_model() -> tuple[LoadedModel | None, WeightsStatus]:
    # Shared by every session and thread: the model is used read-only under inference_mode.
    return load_model()


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
    return _cached_model()


def reload_model() -> None:
    _cached_model.clear()


def store() -> Engine:
    return _cached_store(config.database_url())


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
