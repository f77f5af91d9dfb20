"""Serving: the doors people and programs come in by.

api (the HTTP API, FastAPI; responses: the shapes it answers with), tokens (API tokens), ui (the only module importing
Streamlit: cached loaders and shared widgets for pages/), cli (`python -m shelf`, one module per command family).
Wires the parts below together.
"""
MAY_IMPORT = ("ingest", "storage", "analytics", "recognition")
