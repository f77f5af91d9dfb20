"""Altair chart builders: pure functions from aggregated frames to charts (aggregate first, chart second)."""
from __future__ import annotations

import altair as alt
import pandas as pd

MAX_BARS = 25


def tally_bar_chart(tally: pd.DataFrame, max_bars: int = MAX_BARS) -> alt.Chart:
    """Horizontal bars: count per label, shaded by mean confidence; the most frequent `max_bars` labels."""
    top = tally.head(max_bars).copy()
    top["name"] = top["label"] + " (" + top["class_index"].astype(str) + ")"
    return (
        alt.Chart(top)
        .mark_bar()
        .encode(
            y=alt.Y("name:N", sort="-x", title=None, axis=alt.Axis(labelLimit=260)),
            x=alt.X("count:Q", title="Regions counted", axis=alt.Axis(tickMinStep=1, format="d")),
            color=alt.Color("mean_confidence:Q", title="Mean confidence", scale=alt.Scale(domain=[0, 1],
                            scheme="blues")),
            tooltip=[alt.Tooltip("label:N", title="Label"), alt.Tooltip("class_index:Q", title="Class"),
                     alt.Tooltip("count:Q", title="Count"), alt.Tooltip("share:Q", format=".1%", title="Share"),
                     alt.Tooltip("mean_confidence:Q", format=".1%", title="Mean confidence")],
        )
        .properties(height=max(120, 24 * len(top)))
    )
