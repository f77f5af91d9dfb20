"""Storage: the one database (SQLAlchemy Core; SQLite by default, PostgreSQL for a chain).

schema (tables), migrations, store (photos, regions, predictions, corrections, runs, settings; one transaction per
photo), vectors (region embeddings as stored), rollup (tallies kept in step on every write), audit (who changed
what; append-only), batches, tasks (store tasks, their rules and the photos waiting to be evaluated), outbox (task
events and the webhooks they go to), profiles (region profiles), prices (shelf-edge labels and their corrections),
backup. Takes ingest's decoded images and boxes; knows nothing of the model (no torch) or of reports.
"""
MAY_IMPORT = ("ingest",)
