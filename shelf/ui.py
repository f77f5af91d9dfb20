"""The one module of `shelf` that imports Streamlit: cached loaders and small widgets the pages share."""
from __future__ import annotations

import re

import streamlit as st
from sqlalchemy.engine import Engine

from shelf import config
from shelf.model import HOW_TO_GET_WEIGHTS, LoadedModel, WeightsStatus, load_model
from shelf.store import open_store

MODEL_PAGE = "pages/home_page.py"


@st.cache_resource(show_spinner="Loading ResNet-18 …")
def _cached_model() -> tuple[LoadedModel | None, WeightsStatus]:
    # Shared by every session and thread: the model is used read-only under inference_mode.
    return load_model()


@st.cache_resource(show_spinner=False)
def _cached_store(url: str) -> Engine:
    return open_store(url)


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


def require_model() -> LoadedModel | None:
    """The loaded model, or a plain explanation of what to do when there is none."""
    loaded, status = model()
    if loaded is None:
        st.error(f"**The ResNet-18 weights are not available**, so nothing can be recognized yet. "
                 f"{status.problem}", icon=":material/error:")
        st.markdown(HOW_TO_GET_WEIGHTS)
        st.page_link(MODEL_PAGE, label="Open the Model page to import a weights file", icon=":material/upload:")
    return loaded
