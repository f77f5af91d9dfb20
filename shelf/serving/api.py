"""The HTTP API: the same stage functions as the dashboard and the CLI, over FastAPI (served by uvicorn).

    POST /v1/classify               whole-image predictions, nothing stored (the `shelf classify --format json` list)
    POST /v1/photos                 recognise and store one photo (exactly once by content hash)
    GET  /v1/photos/{id}            a stored photo's regions (a page of them), top-k and SKU matches
    GET  /v1/photos/{id}/overlay    the photo with its regions drawn (PNG)
    GET  /v1/tallies                tallies as JSON, or CSV with `Accept: text/csv` (formula cells inert)
    GET  /v1/health                 model and database state (no token needed)

Access: `Authorization: Bearer <token>` (shelf.serving.tokens); a token is an Identity with a role, checked with
shelf.access like every dashboard action. An upload's token is checked before its body is read, so an unknown
token costs the server nothing. A server started with no token configured listens on 127.0.0.1 only and
treats tokenless requests as the local user, like the dashboard without sign-in. Uploads are untrusted: their names
are display text only (photos are kept under their content hash), and each has the dashboard's size and pixel limits.

`create_app(settings, loaded)` builds the app; the model is loaded once per worker process in the app's lifespan
(or given, in tests). `python -m shelf.serving.api > docs/openapi.json` writes the OpenAPI schema checked into the
repository.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import (
    Depends,
    FastAPI,
    File,
    Form,
    HTTPException,
    Path,
    Query,
    Request,
    UploadFile,
)
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBearer
from pydantic import AliasChoices, BeforeValidator
from starlette.concurrency import run_in_threadpool

import shelf
from shelf import config
from shelf.access import LOCAL, Forbidden, Identity, require
from shelf.files import MB, size_problem
from shelf.ingest.images import MAX_BYTES, clean_filename
from shelf.ingest.regions import (
    MAX_REGIONS,
    MAX_STORED_TOP_K,
    STORED_LIMITS,
    check_stored_top_k,
)
from shelf.serving import tokens, webhooks
from shelf.serving.responses import (
    Box,
    ClassifiedFile,
    ComplianceResponse,
    DatabaseState,
    Health,
    ModelState,
    Photo,
    Prediction,
    PriceLabel,
    Problem,
    Region,
    SkuMatch,
    TallyResponse,
)
from shelf.serving.task_api import add_task_routes
from shelf.storage.profiles import ProfileError
from shelf.storage.schema import MAX_ID

FORM_SLACK = MB  # multipart framing and the text fields, on top of the files themselves
LOCAL_ENV = "SHELF_API_NO_TOKENS"  # set by `shelf serve` when it started with no token (and bound to 127.0.0.1)
GROUPINGS = Literal["label", "category", "sku", "brand", "store", "aisle", "date"]
HEX = re.compile(r"[0-9a-fA-F]{8,64}")
PAGE = 100  # regions per page of GET /v1/photos/{id} unless `limit` says otherwise
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_date(value):
    """A date as YYYY-MM-DD and nothing else: pydantic would take `to=0` as a Unix time, 1970-01-01."""
    if isinstance(value, dt.date) or isinstance(value, str) and ISO_DATE.fullmatch(value):
        return value  # pydantic reads it (and checks the day exists)
    raise ValueError("a date is written YYYY-MM-DD")


IsoDate = Annotated[dt.date, BeforeValidator(_iso_date)]


@dataclass(frozen=True)
class ApiSettings:
    db_url: str | None = None  # None: SHELF_DATABASE_URL, else the SQLite file in the data dir
    max_bytes: int = MAX_BYTES  # per file: the dashboard's upload limit
    max_files: int = config.DEFAULT_MAX_FILES_PER_REQUEST
    local: bool = False  # no token configured: tokenless requests act as the local user (serve binds 127.0.0.1)
    work_slots: int = 2  # recognitions at once per worker: bounds memory (a 12 MP photo decodes to 36 MB)
    task_worker: bool = False  # deliver store tasks' webhooks from a thread (shelf.serving.webhooks)

    @classmethod
    def from_env(cls) -> ApiSettings:
        return cls(max_files=config.max_files_per_request(), local=config.env_flag(LOCAL_ENV), task_worker=True)


@dataclass
class Worker:
    """What one worker process holds: the store, the model (loaded once), and the runs its photos go to."""

    engine: Any = None
    loaded: Any = None
    model_problem: str | None = None
    runs: dict[str, int] = field(default_factory=dict)
    slots: threading.BoundedSemaphore = field(default_factory=lambda: threading.BoundedSemaphore(2))


# ---------------------------------------------------------------------------------------------------------------
# Access


# declared for the OpenAPI schema's security scheme; `authenticate` reads the header itself
bearer = HTTPBearer(auto_error=False, description="an API token: `python -m shelf token create --role ROLE NAME`")


def _unauthorised(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def authenticate(app: FastAPI, authorization: str | None) -> Identity:
    """Who sent a request with this Authorization header (HTTPException 401 when nobody we know)."""
    worker: Worker = app.state.worker
    scheme, _, secret = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        if app.state.settings.local and not tokens.any_active(worker.engine):
            return LOCAL
        raise _unauthorised("an API token is required: send 'Authorization: Bearer <token>'")
    found = tokens.identity_for(worker.engine, secret.strip())
    if found is None:
        raise _unauthorised("unknown or revoked API token")
    return found


def _identity(request: Request, _: Annotated[Any, Depends(bearer)]) -> Identity:
    """The caller: as BodyLimit found it before an upload's body was read, else from the header now."""
    return getattr(request.state, "identity", None) or authenticate(request.app, request.headers.get("authorization"))


def allowed(action: str):
    """A dependency: the caller's identity, if its role may do `action` (else 401 or 403)."""
    def check(identity: Annotated[Identity, Depends(_identity)]) -> Identity:
        try:
            require(identity, action)
        except Forbidden as exc:
            raise HTTPException(403, str(exc)) from None
        return identity
    return check


# ---------------------------------------------------------------------------------------------------------------
# Helpers


def load_model(engine) -> tuple[Any, str | None]:
    """(the model on the chosen backend, or None; what went wrong, if anything): what the CLI loads."""
    from shelf.recognition.backends import BackendError, chosen_backend, with_backend
    from shelf.recognition.model import load_model as resolve_and_load
    loaded, status = resolve_and_load()
    if loaded is None:
        return None, f"ResNet-18 weights unavailable: {status.problem}"
    try:
        return with_backend(loaded, chosen_backend(engine), engine), None
    except BackendError as exc:
        return with_backend(loaded, "onnx"), f"{exc}; running the faithful backend"


class BodyLimit:
    """A request body over its route's limit gets 413 with a JSON message: at once when Content-Length declares
    it, else as soon as the streamed body passes the limit (nothing beyond it is read or spooled to disk). An
    upload (a route with its own limit) is authenticated first: a missing, unknown or revoked token gets its 401
    before a byte of the body is read."""

    def __init__(self, app, limits: dict[str, int], default: int = FORM_SLACK):
        self.app, self.limits, self.default = app, limits, default

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limits.get(scope["path"], self.default)
        detail = f"the request is over the limit of {limit / MB:g} MB for {scope['path']}"
        headers = dict(scope["headers"])
        if scope["path"] in self.limits:
            try:
                identity = await run_in_threadpool(authenticate, scope["app"],
                                                   headers.get(b"authorization", b"").decode("latin-1"))
            except HTTPException as exc:
                return await JSONResponse({"detail": exc.detail}, exc.status_code, exc.headers)(scope, receive, send)
            scope.setdefault("state", {})["identity"] = identity  # the endpoint's dependency takes it from here
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            return await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise HTTPException(413, detail)  # rendered as JSON by the app's exception handling
            return message

        await self.app(scope, counted, send)


def _model(request: Request):
    worker: Worker = request.app.state.worker
    if worker.loaded is None:
        raise HTTPException(503, f"the model is not available: {worker.model_problem}")
    return worker.loaded


def _read(upload: UploadFile, limit: int) -> tuple[str, bytes | None, str | None]:
    """(display name, bytes or None, problem or None) of one uploaded file, never reading more than `limit` + 1."""
    name = clean_filename(upload.filename)
    if upload.size is not None and upload.size > limit:
        return name, None, size_problem(upload.size, limit)
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        return name, None, f"the file is larger than the limit of {limit / MB:g} MB"
    return name, data, None


def _photo(result, record: dict, sku_names: dict[int, str], first: int = 0) -> Photo:
    """The API's view of a result whose regions are those from position `first` on (a photo's regions are
    numbered 0, 1, 2 … as they were stored)."""
    regions = []
    for position, region in enumerate(result.regions, start=first):
        sku = None
        if region.sku_similarity is not None:
            sku = SkuMatch(id=region.sku_id, name=sku_names.get(region.sku_id, "Unknown"),
                           similarity=region.sku_similarity)
        regions.append(Region(position=position, box=Box(**vars(region.box)),
                              predictions=[Prediction(**vars(p)) for p in region.predictions], sku=sku))
    total = len(regions) if result.regions_total is None else result.regions_total
    return Photo(photo_id=result.photo_id, name=record["name"], sha256=record["sha256"],
                 already_stored=result.already_stored, width=record["width"], height=record["height"],
                 store=record["store"], aisle=record["aisle"], captured_on=record["captured_on"], regions=regions,
                 regions_total=total, notes=result.notes, overlay=f"/v1/photos/{result.photo_id}/overlay",
                 prices_read=result.prices_read,
                 labels=[PriceLabel(box=Box(**vars(lb.box)), text=lb.text, confidence=lb.confidence,
                                    price=None if lb.price is None else float(lb.price.amount),
                                    quantity=lb.price.quantity if lb.price else 1, per=lb.price.per if lb.price else "",
                                    facings=list(lb.facings)) for lb in result.labels])


def _sku_names(engine, result) -> dict[int, str]:
    ids = {r.sku_id for r in result.regions if r.sku_id is not None}
    if not ids:
        return {}
    from shelf.recognition.catalog import skus_frame
    skus = skus_frame(engine)
    return {int(i): name for i, name in zip(skus["id"], skus["name"]) if int(i) in ids}


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 in the API's one error shape, `{"detail": "..."}`, naming each field and its problem."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"] if part not in ("body", "query", "path", "header"))
        problems.append(f"{where or 'request'}: {error['msg'].removeprefix('Value error, ')}")
    return JSONResponse({"detail": "; ".join(problems)}, status_code=422)


def _region_mode(text: str):
    """The region mode a client asked for; 422 for one the API does not offer."""
    from shelf.ingest.regions import parse_region_mode
    try:
        mode = parse_region_mode(text)
    except ValueError as exc:
        raise HTTPException(422, f"regions: {exc}") from None
    if mode.kind == "boxes":
        raise HTTPException(422, "regions: boxes:FILE reads a box file on the server; the API offers whole, "
                                 "auto[:PROFILE], grid:RxC and detector")
    if mode.kind == "detector" and mode.source and not HEX.fullmatch(mode.source):
        raise HTTPException(422, "regions: name a detector by the start of its sha256 (`python -m shelf detector "
                                 "status`), never by a path on the server")
    return mode


# ---------------------------------------------------------------------------------------------------------------
# The app


def create_app(settings: ApiSettings | None = None, loaded=None) -> FastAPI:
    """The API app. `loaded`: a model to use instead of loading one in the lifespan (tests)."""
    settings = settings or ApiSettings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from shelf.storage.store import open_store
        worker: Worker = app.state.worker
        worker.engine = open_store(settings.db_url)
        if loaded is not None:
            worker.loaded = loaded
        else:
            worker.loaded, worker.model_problem = load_model(worker.engine)
        delivering = webhooks.start_background(worker.engine) if settings.task_worker else None
        yield
        webhooks.stop_background(delivering)
        worker.engine.dispose()

    app = FastAPI(title="Shelf", version=shelf.__version__, lifespan=lifespan,
                  summary="Retail shelf recognition: post shelf photos, get products, facings and tallies.",
                  description="Tokens: `python -m shelf token create --role viewer|reviewer|admin NAME`, sent as "
                              "`Authorization: Bearer <token>`. Viewer: classify, photos, tallies. Reviewer: also "
                              "store photos. Errors are `{\"detail\": \"...\"}` naming the file and the problem.")
    app.state.settings = settings
    app.state.worker = Worker(slots=threading.BoundedSemaphore(settings.work_slots))
    app.add_middleware(BodyLimit, limits={"/v1/classify": settings.max_files * settings.max_bytes + FORM_SLACK,
                                          "/v1/photos": settings.max_bytes + FORM_SLACK})
    app.add_exception_handler(RequestValidationError, _invalid_request)
    invalid = {422: {"model": Problem, "description": "a parameter or field is not valid (the detail says which)"}}
    errors = {401: {"model": Problem, "description": "no token, or an unknown or revoked one"},
              403: {"model": Problem, "description": "the token's role may not do this"}, **invalid}
    upload = {400: {"model": Problem, "description": "the body is not multipart/form-data Shelf can parse"},
              413: {"model": Problem, "description": "over the size limit, or too many files"},
              503: {"model": Problem, "description": "the model is not available (no weights)"}}

    @app.post("/v1/classify", response_model=list[ClassifiedFile], response_model_exclude_none=True,
              tags=["recognition"],
              responses={**errors, **upload,
                         422: {"model": list[ClassifiedFile] | Problem,
                               "description": "no file could be classified (the list says why, per file), or a "
                                              "field is not valid (`detail`)"}})
    def classify(request: Request,
                 file: Annotated[list[UploadFile], File(min_length=1,
                                                        description="one or more photos (repeat the field)")],
                 identity: Annotated[Identity, Depends(allowed("view"))],
                 top_k: Annotated[int, Form(ge=1, le=1000)] = 3):
        """Whole-image predictions for each file; nothing is stored. The same list as `shelf classify --format
        json`: per file its predictions, or an error. 200 when at least one file was classified; when none was,
        413 if a file was over the size limit, else 422."""
        from shelf.recognition.classify import classification_record
        model = _model(request)
        if len(file) > settings.max_files:
            raise HTTPException(413, f"{len(file)} files; the limit is {settings.max_files} per request")
        worker: Worker = request.app.state.worker
        records, too_large = [], False
        for upload in file:
            name, data, problem = _read(upload, settings.max_bytes)
            if problem:
                records.append({"image": name, "error": problem})
                too_large = True
                continue
            with worker.slots:
                records.append(classification_record(model, name, data, top_k))
        if any("predictions" in r for r in records):
            return records
        return JSONResponse(jsonable_encoder(records), status_code=413 if too_large else 422)

    @app.post("/v1/photos", response_model=Photo, status_code=201, tags=["photos"],
              responses={**errors, **upload,
                         200: {"model": Photo, "description": "already stored: the stored result"},
                         422: {"model": Problem, "description": "the photo or a field cannot be used"}})
    def post_photo(request: Request, response: Response,
                   file: Annotated[UploadFile, File(validation_alias=AliasChoices("file", "photo"),
                                                    description="the shelf photo (`photo` is accepted too)")],
                   identity: Annotated[Identity, Depends(allowed("recognize"))],
                   store: Annotated[str, Form(max_length=100)] = "",
                   aisle: Annotated[str, Form(max_length=100)] = "",
                   date: Annotated[IsoDate | None, Form(description="capture date, YYYY-MM-DD")] = None,
                   regions: Annotated[str, Form(description="whole | auto[:PROFILE] | grid:RxC[@OVERLAP] | "
                                                            "detector[:SHA256][@conf=…,iou=…,tiles=…]")] = "whole",
                   crop: Annotated[Literal["center", "pad"], Form()] = "center",
                   catalog: Annotated[bool, Form(description="also name SKUs from the catalog")] = False,
                   top_k: Annotated[int, Form(ge=1, json_schema_extra={"maximum": MAX_STORED_TOP_K},
                                              description=f"predictions stored per region: {STORED_LIMITS}")
                          ] = 3,
                   prices: Annotated[bool, Form(description="also read the shelf-edge price labels")] = False
                   ) -> Photo:
        """Recognise one photo and store it, exactly once by content hash: 201 with the result when it is new,
        200 with the stored result (`already_stored: true`) when the same bytes were posted before."""
        from shelf.recognition import pipeline
        from shelf.storage.store import Context, photo_record
        model = _model(request)
        mode = _region_mode(regions)
        try:
            check_stored_top_k(top_k)
        except ValueError as exc:
            raise HTTPException(422, f"top_k: {exc}") from None
        name, data, problem = _read(file, settings.max_bytes)
        if problem:
            raise HTTPException(413, f"{name}: {problem}")
        worker: Worker = request.app.state.worker
        index, threshold = None, 0.0
        if catalog:
            from shelf.recognition import catalog as skus
            index, threshold = skus.load_index(worker.engine, model, crop), skus.get_threshold(worker.engine)
        with worker.slots:
            try:
                (result,) = pipeline.recognize(model, worker.engine, [pipeline.Upload(name, data)],
                                               Context(store, aisle, date), mode, top_k, crop, catalog=index,
                                               catalog_threshold=threshold, previews=0, runs=worker.runs, by=identity,
                                               prices=prices)
            except ProfileError as exc:
                raise HTTPException(422, f"regions: {exc}") from None
        if not result.ok:
            raise HTTPException(422, result.error)
        from shelf.analytics.tasks import evaluate_pending
        evaluate_pending(worker.engine)  # store tasks from this photo (the webhooks get them from the worker)
        if result.already_stored:
            response.status_code = 200
        return _photo(result, photo_record(worker.engine, result.photo_id), _sku_names(worker.engine, result))

    @app.get("/v1/photos/{photo_id}", response_model=Photo, tags=["photos"],
             responses={**errors, 404: {"model": Problem, "description": "no such photo"}})
    def get_photo(request: Request, photo_id: Annotated[int, Path(ge=1)],
                  identity: Annotated[Identity, Depends(allowed("view"))],
                  offset: Annotated[int, Query(ge=0, le=MAX_ID, description="first region position")] = 0,
                  limit: Annotated[int, Query(ge=1, le=MAX_REGIONS, description="regions per page")] = PAGE
                  ) -> Photo:
        """A stored photo: its context and one page of its current regions (by position) with their top-k and SKU
        matches; `regions_total` says how many there are."""
        from shelf.recognition.pipeline import stored_result
        worker: Worker = request.app.state.worker
        record = _stored(worker, photo_id)
        result = stored_result(worker.engine, record["name"], photo_id, range(offset, offset + limit))
        return _photo(result, record, _sku_names(worker.engine, result), first=offset)

    @app.get("/v1/photos/{photo_id}/overlay", tags=["photos"], response_class=Response,
             responses={**errors, 404: {"model": Problem, "description": "no such photo"},
                        200: {"content": {"image/png": {}}, "description": "the overlay, at most 1280 px"}})
    def get_overlay(request: Request, photo_id: Annotated[int, Path(ge=1)],
                    identity: Annotated[Identity, Depends(allowed("view"))],
                    colour_by: Literal["label", "confidence"] = "label") -> Response:
        """The photo (at most 1280 pixels on its long side) with numbered boxes and '#n label p%' tags."""
        from shelf.ingest.images import ImageError, decode_image
        from shelf.ingest.overlay import PREVIEW_SIDE, draw_overlay, png_bytes, preview
        from shelf.recognition.pipeline import stored_result
        worker: Worker = request.app.state.worker
        record = _stored(worker, photo_id)
        try:
            data = (config.data_dir() / record["file"]).read_bytes()
            image = preview(decode_image(data, record["name"], reduce_to=PREVIEW_SIDE).image)
        except (OSError, ImageError) as exc:
            raise HTTPException(404, f"{record['name']}: the stored photo file cannot be read ({exc})") from None
        result = stored_result(worker.engine, record["name"], photo_id, top_k=1)
        drawn = draw_overlay(image, (record["width"], record["height"]),
                             [(r.box, r.top1.label, r.top1.class_index, r.top1.probability) for r in result.regions],
                             colour_by, labels=result.labels)
        return Response(png_bytes(drawn), media_type="image/png")

    @app.get("/v1/tallies", tags=["tallies"], response_model=TallyResponse,
             responses={**errors, 200: {"content": {"text/csv": {}},
                                        "description": "JSON, or CSV when the request says `Accept: text/csv`"}})
    def get_tallies(request: Request, identity: Annotated[Identity, Depends(allowed("view"))],
                    by: Annotated[list[GROUPINGS], Query(description="grouping; repeat for several")] = ["label"],
                    min_confidence: Annotated[float, Query(ge=0, le=1, description="steps of 0.05")] = 0.0,
                    store: Annotated[list[str], Query(description="repeat for several")] = [],
                    aisle: Annotated[list[str], Query()] = [],
                    category: Annotated[list[str], Query()] = [],
                    date_from: Annotated[IsoDate | None, Query(alias="from")] = None,
                    date_to: Annotated[IsoDate | None, Query(alias="to")] = None):
        """Facings, share of shelf and confidence, computed in the database: the numbers the Tallies page and
        `python -m shelf tallies` give."""
        from shelf.analytics.export import to_csv_bytes
        from shelf.analytics.report import tally_table
        from shelf.analytics.tally import TallyFilter
        worker: Worker = request.app.state.worker
        selection = TallyFilter(store, aisle, date_from, date_to, category)
        table = tally_table(worker.engine, by, min_confidence, selection)
        if "text/csv" in request.headers.get("accept", ""):
            return Response(to_csv_bytes(table), media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition": 'attachment; filename="tallies.csv"'})
        return TallyResponse(by=list(dict.fromkeys(by)), min_confidence=min_confidence,
                             rows=json.loads(table.to_json(orient="records", date_format="iso")))

    @app.get("/v1/compliance", tags=["tallies"], response_model=ComplianceResponse,
             responses={**errors, 200: {"content": {"text/csv": {}},
                                        "description": "JSON, or CSV when the request says `Accept: text/csv`"}})
    def get_compliance(request: Request, identity: Annotated[Identity, Depends(allowed("view"))],
                       level: Literal["products", "aisles", "prices"] = "products",
                       min_confidence: Annotated[float, Query(ge=0, le=1, description="steps of 0.05")] = 0.0,
                       store: Annotated[list[str], Query(description="repeat for several")] = [],
                       aisle: Annotated[list[str], Query()] = [],
                       date_from: Annotated[IsoDate | None, Query(alias="from")] = None,
                       date_to: Annotated[IsoDate | None, Query(alias="to")] = None):
        """Planogram compliance, computed in the database: what `python -m shelf compliance` and the Compliance
        page give. Only store × aisle × date with both photos and a planogram appear."""
        from shelf.analytics import compliance
        from shelf.analytics.export import to_csv_bytes
        from shelf.analytics.prices import price_lines
        from shelf.analytics.tally import TallyFilter
        worker: Worker = request.app.state.worker
        selection = TallyFilter(store, aisle, date_from, date_to)
        table = compliance.summary(worker.engine, selection, min_confidence) if level == "aisles" else \
            price_lines(worker.engine, selection, min_confidence) if level == "prices" else \
            compliance.lines(worker.engine, selection, min_confidence)
        if "text/csv" in request.headers.get("accept", ""):
            return Response(to_csv_bytes(table), media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition": 'attachment; filename="compliance.csv"'})
        return ComplianceResponse(level=level, min_confidence=min_confidence,
                                  rows=json.loads(table.to_json(orient="records", date_format="iso")))

    @app.get("/v1/health", response_model=Health, tags=["service"],
             responses={503: {"model": Health, "description": "the model or the database is not available"}})
    def health(request: Request):
        """Whether this worker can recognise (model loaded) and reach the store. No token needed."""
        import sqlalchemy as sa

        from shelf.storage.schema import photos
        worker: Worker = request.app.state.worker
        model = ModelState(loaded=False, problem=worker.model_problem)
        if worker.loaded is not None:
            w = worker.loaded.weights
            model = ModelState(loaded=True, weights_sha256=w.sha256, weights=w.kind,
                               backend=worker.loaded.backend_name, problem=worker.model_problem)
        try:
            with worker.engine.connect() as conn:
                count = conn.execute(sa.select(sa.func.count()).select_from(photos)).scalar_one()
            database = DatabaseState(ok=True, dialect=worker.engine.dialect.name, photos=count)
        except Exception as exc:  # the point of a health check: say what is wrong instead of failing
            database = DatabaseState(ok=False, dialect=worker.engine.dialect.name,
                                     problem=f"{exc.__class__.__name__}: {str(exc)[:200]}")
        ok = model.loaded and database.ok
        body = Health(status="ok" if ok else "unavailable", version=shelf.__version__,
                      access="local" if settings.local else "tokens", model=model, database=database)
        return JSONResponse(jsonable_encoder(body), status_code=200 if ok else 503)

    add_task_routes(app, allowed, errors)
    return app


def _stored(worker: Worker, photo_id: int) -> dict:
    from shelf.storage.store import photo_record
    record = photo_record(worker.engine, photo_id)
    if record is None:
        raise HTTPException(404, f"no photo with id {photo_id}")
    return record


def app_from_env() -> FastAPI:
    """What `python -m shelf serve` runs in each uvicorn worker (settings from the environment)."""
    return create_app(ApiSettings.from_env())


def bind_address(host: str, tokens_exist: bool) -> tuple[str, str | None]:
    """(where to listen, a note for the operator): without any token the API serves this machine only."""
    if tokens_exist:
        return host, None
    note = ("no API token is configured, so the API listens on 127.0.0.1 only and requests need no token (they act "
            "as the local user). Create one with `python -m shelf token create --role viewer NAME` to serve others.")
    if host not in ("127.0.0.1", "localhost", "::1"):
        note += f" (asked for {host})"
    return "127.0.0.1", note


def openapi_text(app: FastAPI | None = None) -> str:
    """The OpenAPI schema as checked in (docs/openapi.json): default limits, stable key order."""
    schema = (app or create_app(ApiSettings())).openapi()
    return json.dumps(schema, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":  # python -m shelf.serving.api > docs/openapi.json
    import sys
    sys.stdout.write(openapi_text())
