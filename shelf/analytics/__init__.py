"""Analytics: what the stored regions say, computed in the database, pandas only for the rows that come back.

tally and report (facings, share of shelf, confidence), charts (Altair), review (the least-confident queue),
categories (class → retail category map), planogram and compliance, prices (price compliance), export (CSV,
COCO, SKU-110K, manifest), tasks (compliance findings of each photo stored → store tasks opened, verified, reopened;
time to fix). Reads the store; never imports recognition or torch, so reporting starts fast and runs where no model
is.
"""
MAY_IMPORT = ("ingest", "storage")
