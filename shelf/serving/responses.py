"""The HTTP API's response shapes: the OpenAPI schema clients generate code from (docs/openapi.json)."""
from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field


class Prediction(BaseModel):
    rank: int = Field(description="1 = most probable")
    class_index: int = Field(description="ImageNet class index (names are not unique: key on this)")
    label: str
    probability: float = Field(ge=0, le=1)


class ClassifiedFile(BaseModel):
    image: str = Field(description="the uploaded file's name, cleaned for display")
    predictions: list[Prediction] | None = Field(None, description="top-k, best first (absent on error)")
    error: str | None = Field(None, description="why the file could not be classified (absent on success)")


class Box(BaseModel):
    x1: int
    y1: int
    x2: int
    y2: int


class SkuMatch(BaseModel):
    id: int | None = Field(description="the catalog SKU, or null: nothing in the catalog was close enough")
    name: str = Field(description="the SKU's name, or 'Unknown'")
    similarity: float | None


class Region(BaseModel):
    position: int
    box: Box = Field(description="in pixels of the upright (EXIF-rotated) photo")
    predictions: list[Prediction]
    sku: SkuMatch | None = Field(None, description="the catalog match, when the photo was matched against it")


class PriceLabel(BaseModel):
    box: Box = Field(description="the label's print, in pixels of the upright photo")
    text: str = Field(description="every line the OCR read, biggest first")
    price: float | None = Field(description="the amount read (null: no price could be read)")
    quantity: int = Field(description="a multi-buy's items (2 for 3.00: 2, price 3.00); 1 otherwise")
    per: str = Field(description="a unit price's unit (kg, 100 g, l); empty for an item price")
    confidence: float = Field(description="the OCR's, for the line the price came from")
    facings: list[int] = Field(description="positions of the regions (the facing group) the label prices")


class Photo(BaseModel):
    photo_id: int
    name: str
    sha256: str
    already_stored: bool = Field(description="true when these bytes were stored before this request; the stored "
                                             "result is returned and nothing is written")
    width: int
    height: int
    store: str
    aisle: str
    captured_on: dt.date | None
    regions: list[Region] = Field(description="POST: all of them; GET: the page asked for (`offset`, `limit`)")
    regions_total: int = Field(description="how many regions the photo has")
    notes: list[str] = Field(default_factory=list, description="things to know that did not stop the photo")
    overlay: str = Field(description="path of the overlay PNG")
    prices_read: bool = Field(False, description="the shelf-edge price labels were read (`prices`)")
    labels: list[PriceLabel] = Field(default_factory=list, description="shelf-edge price labels, when read")


class Problem(BaseModel):
    detail: str


class ModelState(BaseModel):
    loaded: bool
    weights_sha256: str | None = None
    weights: str | None = Field(None, description="verified ImageNet file, unverified, or untrained")
    backend: str | None = None
    problem: str | None = None


class DatabaseState(BaseModel):
    ok: bool
    dialect: str
    photos: int | None = None
    problem: str | None = None


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    version: str
    access: Literal["tokens", "local"] = Field(description="local: no token configured, loopback only")
    model: ModelState
    database: DatabaseState


class TallyResponse(BaseModel):
    by: list[str]
    min_confidence: float
    rows: list[dict[str, Any]] = Field(description="one per group: the grouping columns, facings, share, "
                                                   "mean_confidence, min_confidence, below_threshold, corrected")


class ComplianceResponse(BaseModel):
    level: Literal["products", "aisles", "prices"]
    min_confidence: float
    rows: list[dict[str, Any]] = Field(description="products: per store × aisle × date × product, expected and "
                                                   "found facings and status (ok, under, missing, extra); aisles: "
                                                   "per store × aisle × date, on-shelf availability, compliance "
                                                   "and empty shelf share; prices: per product with a planned price, "
                                                   "the label read and price_status (price_ok, price_wrong, "
                                                   "label_missing, unreadable)")

