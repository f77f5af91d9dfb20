"""Serving: the doors people and programs come in by.

api (the HTTP API, FastAPI; responses: the shapes it answers with; task_api: its /v1/tasks routes), tokens (API
tokens), webhooks (delivering store task events: signed POSTs, retries, from a thread or `tasks deliver`), ui/ (the
only package importing Streamlit: cached loaders and shared widgets for pages/), cli (`python -m shelf`, one module per
command family). Wires the parts below together.
"""
MAY_IMPORT = ("ingest", "storage", "analytics", "recognition")
