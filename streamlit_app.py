"""Shelf dashboard router: `streamlit run streamlit_app.py`. All logic lives in the `shelf` package.
"""
import streamlit as st

from shelf import ui

st.set_page_config(page_title="Shelf", page_icon=":material/shelves:", layout="wide")

navigation = st.navigation([
    st.Page("pages/home.py", title="Home & model", icon=":material/home:", url_path="home", default=True),
    st.Page("pages/recognize.py", title="Recognize", icon=":material/photo_camera:", url_path="recognize"),
    st.Page("pages/review.py", title="Review", icon=":material/rule:", url_path="review"),
    st.Page("pages/tallies.py", title="Tallies", icon=":material/bar_chart:", url_path="tallies"),
    st.Page("pages/catalog.py", title="SKU catalog", icon=":material/inventory_2:", url_path="catalog"),
    st.Page("pages/categories.py", title="Categories", icon=":material/category:", url_path="categories"),
])
ui.weights_banner()
navigation.run()
