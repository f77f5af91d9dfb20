"""Shelf: retail shelf recognition with a faithful TorchVision ResNet-18.

The folders follow the data path, bytes → decoded image → regions → predictions → store → tallies → charts / CSV:

    ingest/       bytes → decoded images → regions (grid, auto, box files), overlays, region scoring
    storage/      the database: schema, migrations, photos and regions, rollups, audit log, batches
    analytics/    what the store says: tallies, reports, charts, review, planograms, compliance, exports
    recognition/  the model: weights, backends, preprocessing, classification, catalog, stages, engines
    serving/      the doors: HTTP API, tokens, the Streamlit helpers (ui), the CLI

Each part may import the parts its `MAY_IMPORT` names and the plain modules beside this file (config, files,
labels, access, text), never a part above it; tests/test_layout.py checks it from the import graph.
"""

__version__ = "0.1.0"
