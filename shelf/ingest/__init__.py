"""Ingest: untrusted bytes in, decoded images and regions out.

images (decode safely: size and decoded-pixel limits, EXIF orientation, HEIC, mode → RGB, content hash),
regions (whole, grid, auto: shelf rows → facings and gaps; shelf_lines: the shelf edges auto reads; tuning: auto's
settings from labelled photos), boxfiles (SKU-110K CSV, COCO, YOLO), sources (folders,
manifests, URIs for batches), overlay (regions drawn on their photo), evaluation (regions scored against true
boxes), prices (the price a label's text shows). Pure functions of their inputs: no database, no model, no torch.
"""
MAY_IMPORT: tuple[str, ...] = ()
