"""Altair chart builders: pure functions from aggregated frames (report computes them in the database) to
charts, so a chart carries a few hundred rows at most whatever the size of the store (Altair embeds its data)."""
from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

from shelf.analytics.tally import GROUPINGS
from shelf.storage.schema import THRESHOLD_STEPS, threshold_step

MAX_BARS = 25
CATEGORY_PICK = "category_pick"  # legend selection on the share chart
CONFIDENCE_BRUSH = "confidence_brush"  # interval selection on the histogram


BLANK = "—"  # how an empty store or aisle reads, in charts and tables alike


def blank_as_dash(value) -> str:
    return BLANK if value is None or (isinstance(value, float) and pd.isna(value)) or str(value) in ("", "NaT") \
        else str(value)


def group_name(table: pd.DataFrame, by: Sequence[str]) -> pd.Series:
    """A readable name per tally row: 'pop bottle (737) · North'."""
    parts = []
    for g in dict.fromkeys(by):
        if g == "label":
            parts.append(table["label"].astype(str) + " (" + table["class_index"].astype(str) + ")")
        else:
            parts.append(table[GROUPINGS[g][0]].map(blank_as_dash))
    name = parts[0]
    for part in parts[1:]:
        name = name + " · " + part
    return name


def facings_bar_chart(table: pd.DataFrame, by: Sequence[str], max_bars: int = MAX_BARS) -> alt.Chart:
    """Horizontal bars of facings per group (the `max_bars` largest), shaded by mean confidence."""
    top = table.nlargest(max_bars, "facings").assign(name=lambda t: group_name(t, by))
    return (
        alt.Chart(top)
        .mark_bar()
        .encode(
            y=alt.Y("name:N", sort="-x", title=None, axis=alt.Axis(labelLimit=320, labelOverlap=False)),
            x=alt.X("facings:Q", title="Facings", axis=alt.Axis(tickMinStep=1, format="d")),
            color=alt.Color("mean_confidence:Q", title="Mean confidence",
                            scale=alt.Scale(domain=[0, 1], scheme="blues")),
            tooltip=[alt.Tooltip("name:N", title="Group"), alt.Tooltip("facings:Q", title="Facings"),
                     alt.Tooltip("share:Q", format=".1%", title="Share of shelf"),
                     alt.Tooltip("mean_confidence:Q", format=".1%", title="Mean confidence"),
                     alt.Tooltip("below_threshold:Q", title="Below threshold"),
                     alt.Tooltip("corrected:Q", title="Corrected")],
        )
        .properties(height=max(160, 28 * len(top)))
    )


def share_of_shelf_chart(table: pd.DataFrame) -> alt.Chart:
    """Stacked 100 % bars from shelf.analytics.report.share_by_store: each store's facings split by category. Clicking a
    legend entry picks a category."""
    table = table.assign(store=table["store"].map(blank_as_dash))
    # toggle: clicking a picked entry again unpicks it (Vega-Lite's default only toggles with shift held)
    pick = alt.selection_point(fields=["category"], bind="legend", name=CATEGORY_PICK, toggle="true")
    return (
        alt.Chart(table)
        .mark_bar()
        .encode(
            y=alt.Y("store:N", title="Store", sort="ascending",
                    axis=alt.Axis(labelLimit=260, labelOverlap=False, labelFontSize=12)),
            x=alt.X("facings:Q", stack="normalize", title="Share of shelf", axis=alt.Axis(format="%")),
            color=alt.Color("category:N", title="Category (click to filter)"),
            opacity=alt.condition(pick, alt.value(1.0), alt.value(0.25)),
            tooltip=[alt.Tooltip("store:N", title="Store"), alt.Tooltip("category:N", title="Category"),
                     alt.Tooltip("facings:Q", title="Facings"),
                     alt.Tooltip("share:Q", format=".1%", title="Share of shelf")],
        )
        .add_params(pick)
        .properties(height=max(120, 40 * table["store"].nunique()))
    )


def confidence_histogram(table: pd.DataFrame, threshold: float) -> alt.LayerChart:
    """Regions by top-1 confidence (report.confidence_histogram), with the threshold marked. Drag across bars
    to keep only that range."""
    brush = alt.selection_interval(encodings=["x"], name=CONFIDENCE_BRUSH)
    bars = (
        alt.Chart(table)
        .mark_bar()
        .encode(x=alt.X("low:Q", bin="binned", title="Top-1 confidence (drag to select a range)",
                        axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
                x2="high:Q", y=alt.Y("regions:Q", title="Regions"),
                tooltip=[alt.Tooltip("low:Q", format=".0%", title="From"),
                         alt.Tooltip("high:Q", format=".0%", title="To"), alt.Tooltip("regions:Q", title="Regions")])
        .add_params(brush)
    )
    rule = alt.Chart(pd.DataFrame({"threshold": [threshold]})).mark_rule(color="#b91c1c", strokeDash=[4, 3]) \
        .encode(x="threshold:Q")
    return (bars + rule).properties(height=220)


def photo_days() -> alt.X:
    """The x axis of a trend over photo dates: one tick per whole day at most (no "12 PM", no repeated days)."""
    return alt.X("yearmonthdate(date):T", title="Photo date",
                 axis=alt.Axis(format="%d %b %Y", tickCount={"interval": "day", "step": 1}, labelAngle=-30,
                               labelOverlap=True))


def trend_chart(table: pd.DataFrame) -> alt.Chart:
    """Facings per day and category (shelf.analytics.report.trend)."""
    return (
        alt.Chart(table)
        .mark_line(point=True)
        .encode(x=photo_days(),
                y=alt.Y("facings:Q", title="Facings"),
                color=alt.Color("category:N", title="Category"),
                tooltip=[alt.Tooltip("date:T", title="Date", format="%d %b %Y"),
                         alt.Tooltip("category:N", title="Category"),
                         alt.Tooltip("facings:Q", title="Facings")])
        .properties(height=260)
    )


def picked_categories(selection: dict) -> list[str]:
    """Categories picked in the share chart's legend, from st.altair_chart's selection state."""
    return [p["category"] for p in (selection or {}).get(CATEGORY_PICK, []) if "category" in p]


def brushed_range(selection: dict) -> tuple[float, float] | None:
    """The confidence range dragged on the histogram, if any, widened to whole bins of 0.05."""
    low_high = ((selection or {}).get(CONFIDENCE_BRUSH) or {}).get("low")
    if not low_high:
        return None
    first = min(threshold_step(min(low_high)), 19)
    return THRESHOLD_STEPS[first], THRESHOLD_STEPS[max(threshold_step(max(low_high)), first + 1)]


def confusion_heatmap(confusion: pd.DataFrame, names: dict[int, str]):
    """Altair heatmap of (true, predicted, count) rows, SKUs by name."""
    frame = confusion.assign(true=confusion["true"].map(names), predicted=confusion["predicted"].map(names))
    return alt.Chart(frame).mark_rect().encode(
        x=alt.X("predicted:N", title="Matched as", axis=alt.Axis(labelOverlap=False, labelAngle=-30)),
        y=alt.Y("true:N", title="True SKU", axis=alt.Axis(labelOverlap=False)),
        color=alt.Color("count:Q", title="Photos", scale=alt.Scale(scheme="blues"),
                        legend=alt.Legend(format="d", tickMinStep=1)),
        tooltip=[alt.Tooltip("true:N", title="True"), alt.Tooltip("predicted:N", title="Matched as"),
                 alt.Tooltip("count:Q", title="Photos")],
    ).properties(height=max(160, 32 * frame["true"].nunique()))


def compliance_heatmap(table: pd.DataFrame) -> alt.Chart:
    """Store × aisle cells coloured by planogram compliance (shelf.analytics.compliance.by_store_and_aisle), red to blue
    through yellow (told apart with every kind of colour vision), the figure written in each cell."""
    table = table.assign(store=table["store"].map(blank_as_dash), aisle=table["aisle"].map(blank_as_dash))
    base = alt.Chart(table).encode(
        x=alt.X("aisle:N", title="Aisle", axis=alt.Axis(labelAngle=0, labelLimit=200, orient="top")),
        y=alt.Y("store:N", title="Store", axis=alt.Axis(labelLimit=220, labelOverlap=False)))
    cells = base.mark_rect().encode(
        color=alt.Color("compliance:Q", title="Compliance", scale=alt.Scale(domain=[0, 1], scheme="redyellowblue"),
                        legend=alt.Legend(format="%")),
        tooltip=[alt.Tooltip("store:N", title="Store"), alt.Tooltip("aisle:N", title="Aisle"),
                 alt.Tooltip("compliance:Q", format=".0%", title="Compliance"),
                 alt.Tooltip("osa:Q", format=".0%", title="On-shelf availability"),
                 alt.Tooltip("missing:Q", title="Missing products")])
    labels = base.mark_text(fontSize=11).encode(
        text=alt.Text("compliance:Q", format=".0%"),
        color=alt.condition("datum.compliance > 0.3 && datum.compliance < 0.75", alt.value("black"),
                            alt.value("white")))
    return (cells + labels).properties(height={"step": 30})  # every store a readable, labelled row


def compliance_trend_chart(table: pd.DataFrame) -> alt.Chart:
    """OSA and compliance per photo date (shelf.analytics.compliance.trend)."""
    long = table.melt(id_vars="date", value_vars=["compliance", "osa"], var_name="measure", value_name="value")
    long["measure"] = long["measure"].map({"compliance": "Compliance", "osa": "On-shelf availability"})
    return (alt.Chart(long).mark_line(point=True).encode(
        x=photo_days(),
        y=alt.Y("value:Q", title=None, axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("measure:N", title=None),
        tooltip=[alt.Tooltip("date:T", title="Date", format="%d %b %Y"), alt.Tooltip("measure:N", title="Measure"),
                 alt.Tooltip("value:Q", format=".1%", title="Value")])
        .properties(height=240))
