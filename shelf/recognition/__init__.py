"""Recognition: from decoded regions to stored predictions.

model (weights: resolution, checks, provenance), inputs (the weights' own preprocessing in numpy), backends (torch
eager, ONNX Runtime fp32, int8), classify (batched softmax, top-k, embeddings), detector (imported ONNX product
detectors), catalog (SKUs by embedding similarity), stages (prepare → classify → store as plain functions),
pipeline (the app's and CLI's recognize), engines and batch (the same stages in-process or on Ray), prices and
label_print (shelf-edge price labels: OCR, the print on a label, tying labels to facings).
"""
MAY_IMPORT = ("ingest", "storage")
