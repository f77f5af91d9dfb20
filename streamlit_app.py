"""Shelf dashboard router: `streamlit run streamlit_app.py`. All logic lives in the `shelf` package.

Page files are named `*_page.py` on purpose: with a `pages/` folder, Streamlit starts each process in its legacy
multipage mode, where a URL equal to a file's stem runs that file without this router. URL paths that match no file
stem always come here first.
"""
import streamlit as st

from shelf import ui

st.set_page_config(page_title="Shelf", page_icon=":material/shelves:", layout="wide")

navigation = st.navigation([
    st.Page("pages/home_page.py", title="Home & model", icon=":material/home:", url_path="home", default=True),
    st.Page("pages/recognize_page.py", title="Recognize", icon=":material/photo_camera:", url_path="recognize"),
    st.Page("pages/tallies_page.py", title="Tallies", icon=":material/bar_chart:", url_path="tallies"),
])
ui.weights_banner()
navigation.run()
