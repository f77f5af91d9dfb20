"""Shelf dashboard router: `streamlit run streamlit_app.py`. All logic lives in the `shelf` package."""
import streamlit as st

from shelf import access
from shelf.serving import ui

st.set_page_config(page_title="Shelf", page_icon=":material/shelves:", layout="wide")
me = ui.current_identity()  # without sign-in the local user; with [auth] and nobody signed in, the sign-in screen

home = st.Page("pages/home.py", title="Home & model", icon=":material/home:", url_path="start", default=True)
pages = [
    home,
    st.Page("pages/recognize.py", title="Recognize", icon=":material/photo_camera:", url_path="recognize"),
    st.Page("pages/review.py", title="Review", icon=":material/rule:", url_path="review"),
    st.Page("pages/tallies.py", title="Tallies", icon=":material/bar_chart:", url_path="tallies"),
    st.Page("pages/compliance.py", title="Compliance", icon=":material/fact_check:", url_path="compliance"),
    st.Page("pages/tasks.py", title="Tasks", icon=":material/task_alt:", url_path="tasks"),
    st.Page("pages/catalog.py", title="SKU catalog", icon=":material/inventory_2:", url_path="catalog"),
    st.Page("pages/categories.py", title="Categories", icon=":material/category:", url_path="categories"),
    # The home page is served at /; /home (a natural guess, as every other page has a name) leads there too.
    st.Page(lambda: st.switch_page(home), title="Home", url_path="home", visibility="hidden"),
]
if me.may("view_audit"):
    pages.append(st.Page("pages/audit.py", title="Audit log", icon=":material/history:", url_path="audit"))
navigation = st.navigation(pages, position="top")  # the top bar leaves the page's full width to tables and filters
ui.account_box(me)
try:
    navigation.run()
except access.Forbidden as exc:  # a control the page should not have offered, or a forged widget event
    st.error(f"Not done: {ui.md_escape(str(exc))}.", icon=":material/block:")
