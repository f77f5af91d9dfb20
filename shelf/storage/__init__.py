"""Storage: the one database (SQLAlchemy Core; SQLite by default, PostgreSQL for a chain).

schema (tables), migrations, store (photos, regions, predictions, corrections, runs, settings; one transaction per
photo), rollup (tallies kept in step on every write), audit (who changed what), batches, prices (shelf-edge labels
and their corrections). Takes ingest's decoded images and boxes; knows nothing of the model (no torch) or of reports.
"""
MAY_IMPORT = ("ingest",)
