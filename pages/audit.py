"""Audit log (admins): who changed what and when, with the value before and after; filtered by person, action and
date in the database, newest first, one page at a time, and as CSV."""
import streamlit as st

from shelf.serving import ui
from shelf.storage import audit

PAGE_SIZE = 50

ui.use_router()
st.title("Audit log")
ui.require_role("view_audit")
engine = ui.store()
who_col, action_col, date_col = st.columns(3)
people = who_col.multiselect("People", audit.people(engine), key="audit_people", placeholder="Everyone")
actions = action_col.multiselect("Actions", audit.actions(engine), key="audit_actions", placeholder="All actions",
                                 format_func=audit.action_name)
days = date_col.date_input("Dates (UTC)", [], key="audit_dates", format="YYYY-MM-DD",
                           help="One day, or a first and a last day")
first_day, last_day = (days[0], days[-1]) if days else (None, None)  # one day picked: that day
chosen = audit.AuditFilter(people, actions, first_day, last_day)
filtered = bool(people or actions or days)
total = audit.count(engine, chosen)
st.caption(f"{total:,} change(s){' with these filters' if filtered else ''}: every admin action, every batch of "
           "corrections and every photo moved or recognized again, newest first. The database keeps these rows as "
           "they were written: nobody can change or delete them.")
pages = max(1, -(-total // PAGE_SIZE))
number = st.columns(4)[0].number_input(f"Page (of {pages}, {PAGE_SIZE} per page)", 1, pages, 1,
                                       key=f"audit_page_{repr(chosen)}") if pages > 1 else 1  # new filters: page 1
if total:
    ui.table(audit.readable(audit.page(engine, int(number), PAGE_SIZE, chosen)), hide_index=True, width="stretch",
             column_order=["at", "who", "action", "target", "change", "role", "via"], column_config={
                 "at": st.column_config.DatetimeColumn("When (UTC)", format="YYYY-MM-DD HH:mm:ss"), "who": "Who",
                 "role": "Role", "via": "Signed in via", "action": st.column_config.TextColumn("Action"),
                 "target": "What", "change": st.column_config.TextColumn(
                     "Change", width="large", help="Before → after, for what changed; the CSV has every value")})
else:
    st.info("No change matches these filters." if filtered else "Nothing has been changed yet.",
            icon=":material/info:")
st.download_button("Download these changes (CSV)" if filtered else "Download the audit log (CSV)",
                   data=lambda: audit.csv_bytes(engine, f=chosen), file_name="shelf-audit.csv", mime="text/csv",
                   icon=":material/download:", key="audit_csv", on_click="ignore",
                   help="With the action keys and the before/after values as stored (JSON)", disabled=not total)
