"""The HTTP API's store tasks (`/v1/tasks…`), added to the app by `add_task_routes`.

    GET  /v1/tasks                    tasks, newest first, filtered by store, aisle, state, finding and age; counts by
                                      state
    GET  /v1/tasks/time-to-fix        per store: median and p90 hours from open to verified
    GET  /v1/tasks/{id}               one task with its evidence and its events
    POST /v1/tasks/{id}/acknowledge   open or reopened → acknowledged
    POST /v1/tasks/{id}/done          open, acknowledged or reopened → done (a later photo verifies or reopens it)

Working on a task needs the `work_task` action: a reviewer or admin token, or a token made for the task's store
(`token create --store S014`). Kept apart from shelf.serving.api so that module stays a size one can read; the
app passes its own access dependency in, so there is one way to check a token.
"""

import datetime as dt
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field

from shelf.access import Forbidden, Identity
from shelf.storage.schema import TASK_FINDINGS, TASK_STATES
from shelf.storage.tasks import MAX_AGE_HOURS

STATES = Literal["open", "acknowledged", "done", "reopened", "verified"]
assert set(STATES.__args__) == set(TASK_STATES)
FINDINGS = Literal["missing", "under", "empty", "price_wrong", "label_missing"]
assert set(FINDINGS.__args__) == set(TASK_FINDINGS)


class Task(BaseModel):
    id: int
    state: STATES
    store: str
    aisle: str
    product: str = Field(description="the planned product (SKU name, or ImageNet label and index), or 'empty shelf'")
    finding: FINDINGS = Field(description="what opened it (or last kept it open): missing or under (facings), empty "
                                          "(the aisle's empty-shelf share), price_wrong or label_missing (the "
                                          "product's shelf-edge label, from a photo read with prices: a task of its "
                                          "own beside the product's facings task)")
    expected_facings: int | None
    found_facings: int | None
    empty_share: float | None = Field(description="for an 'empty' finding: gap width / shelf width")
    date: dt.date | None = Field(description="photo date of the newest evidence")
    photo_id: int | None = Field(description="the newest evidence photo (GET /v1/photos/{id}/overlay shows it)")
    opened_at: dt.datetime
    updated_at: dt.datetime
    acknowledged_by: str | None = None
    done_by: str | None = None
    verified_at: dt.datetime | None = None
    reopened: int = Field(description="times a 'done' was not borne out by the next photo")


class TaskEvent(BaseModel):
    event: str
    created_at: dt.datetime
    key: str = Field(description="the idempotency key its webhook deliveries carry")


class TaskDetail(Task):
    evidence: dict[str, Any] = Field(description="photo_id, width, height, gaps and found: boxes [x1, y1, x2, y2] "
                                                 "in the photo's pixels; a price task's also labels (the box of the "
                                                 "label read, none when missing), label_text, planned_price and "
                                                 "price_read (each, for a multi-buy)")
    acknowledged_at: dt.datetime | None = None
    done_at: dt.datetime | None = None
    verified_photo_id: int | None = None
    events: list[TaskEvent]


class TaskPage(BaseModel):
    tasks: list[Task]
    counts: dict[str, int] = Field(description="tasks per state in the selection (all pages)")


class StoreFixTime(BaseModel):
    store: str
    verified: int
    median_hours: float
    p90_hours: float


def add_task_routes(app: FastAPI, allowed: Callable[[str], Callable], errors: dict) -> None:
    """The /v1/tasks routes; `allowed(action)` is the app's access dependency, `errors` its 401/403 responses."""
    from shelf.storage import tasks as stored
    problem = errors[401]["model"]  # the app's {"detail": ...}

    def selection(store: list[str], aisle: list[str], state: list[STATES], older: float | None,
                  newer: float | None, finding: list[FINDINGS]) -> stored.TaskFilter:
        return stored.TaskFilter(store, aisle, state, older, newer, finding)

    ages = {"older_than_hours": Query(ge=0, le=MAX_AGE_HOURS, description="opened at least this many hours ago"),
            "newer_than_hours": Query(ge=0, le=MAX_AGE_HOURS, description="opened at most this many hours ago")}

    @app.get("/v1/tasks", response_model=TaskPage, tags=["tasks"], responses=errors)
    def list_tasks(request: Request, identity: Annotated[Identity, Depends(allowed("view"))],
                   store: Annotated[list[str], Query(description="repeat for several")] = [],
                   aisle: Annotated[list[str], Query()] = [],
                   state: Annotated[list[STATES], Query(description="repeat for several")] = [],
                   finding: Annotated[list[FINDINGS], Query(description="repeat for several")] = [],
                   older_than_hours: Annotated[float | None, ages["older_than_hours"]] = None,
                   newer_than_hours: Annotated[float | None, ages["newer_than_hours"]] = None,
                   limit: Annotated[int, Query(ge=1, le=500)] = 50,
                   offset: Annotated[int, Query(ge=0)] = 0) -> TaskPage:
        """Store tasks, newest first, one page at a time, with the counts per state of the whole selection."""
        engine = request.app.state.worker.engine
        f = selection(store, aisle, state, older_than_hours, newer_than_hours, finding)
        return TaskPage(tasks=stored.page(engine, f, limit, offset), counts=stored.count_by_state(engine, f))

    @app.get("/v1/tasks/time-to-fix", response_model=list[StoreFixTime], tags=["tasks"], responses=errors)
    def time_to_fix(request: Request, identity: Annotated[Identity, Depends(allowed("view"))],
                    store: Annotated[list[str], Query(description="repeat for several")] = [],
                    aisle: Annotated[list[str], Query()] = [],
                    finding: Annotated[list[FINDINGS], Query(description="repeat for several")] = [],
                    newer_than_hours: Annotated[float | None, ages["newer_than_hours"]] = None):
        """Per store, over its verified tasks: how many, and the median and 90th percentile of the hours from open
        to verified."""
        from shelf.analytics.tasks import time_to_fix as fix_times
        f = selection(store, aisle, [], None, newer_than_hours, finding)
        return fix_times(request.app.state.worker.engine, f).to_dict("records")

    @app.get("/v1/tasks/{task_id}", response_model=TaskDetail, tags=["tasks"],
             responses={**errors, 404: {"model": problem, "description": "no such task"}})
    def get_task(request: Request, task_id: Annotated[int, Path(ge=1)],
                 identity: Annotated[Identity, Depends(allowed("view"))]) -> TaskDetail:
        """One task: its evidence (boxes on the evidence photo) and its events, oldest first."""
        return _detail(request.app.state.worker.engine, task_id)

    def move(action: str):
        def change(request: Request, task_id: Annotated[int, Path(ge=1)],
                   identity: Annotated[Identity, Depends(allowed("view"))]) -> TaskDetail:
            engine = request.app.state.worker.engine
            try:
                stored.move(engine, task_id, action, by=identity)
            except Forbidden as exc:
                raise HTTPException(403, str(exc)) from None
            except stored.TaskError as exc:
                raise HTTPException(404 if stored.get(engine, task_id) is None else 409, str(exc)) from None
            return _detail(engine, task_id)
        return change

    moves = {"acknowledge": "open or reopened → acknowledged", "done": "open, acknowledged or reopened → done: the "
             "next photo of the aisle verifies it (product at plan) or reopens it"}
    for action, summary in moves.items():
        app.post(f"/v1/tasks/{{task_id}}/{action}", response_model=TaskDetail, tags=["tasks"], summary=summary,
                 description="Needs the work_task action: a reviewer or admin token, or a token made for the "
                             "task's store. Audited; the change is an event for the webhooks.",
                 responses={**errors, 404: {"model": problem, "description": "no such task"},
                            409: {"model": problem, "description": "not from the task's state"}},
                 name=f"{action}_task")(move(action))


def _detail(engine, task_id: int) -> TaskDetail:
    from shelf.storage import outbox
    from shelf.storage import tasks as stored
    task = stored.get(engine, task_id)
    if task is None:
        raise HTTPException(404, f"no task with id {task_id}")
    return TaskDetail(**task, events=[TaskEvent(**e) for e in outbox.events_of(engine, [task_id])])
