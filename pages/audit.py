"""Audit log (admins): who changed what and when, with the value before and after; newest first, one page at a
time, and the whole log as CSV."""
import streamlit as st

from shelf.serving import ui
from shelf.storage import audit

PAGE_SIZE = 50

ui.use_router()
st.title("Audit log")
ui.require_role("view_audit")
engine = ui.store()
total = audit.count(engine)
st.caption(f"{total} change(s): every admin action and every batch of corrections, newest first. *Before* and "
           "*after* are JSON where they apply.")
pages = max(1, -(-total // PAGE_SIZE))
number = st.columns(4)[0].number_input(f"Page (of {pages}, {PAGE_SIZE} per page)", 1, pages, 1, key="audit_page") \
    if pages > 1 else 1
ui.table(audit.page(engine, int(number), PAGE_SIZE), hide_index=True, width="stretch", column_config={
    "at": st.column_config.DatetimeColumn("When (UTC)", format="YYYY-MM-DD HH:mm:ss"), "who": "Who", "role": "Role",
    "via": "Signed in via", "action": "Action", "target": "What", "before": "Before", "after": "After"})
st.download_button("Download the audit log (CSV)", data=lambda: audit.csv_bytes(engine),
                   file_name="shelf-audit.csv", mime="text/csv", icon=":material/download:", key="audit_csv",
                   on_click="ignore")
