import io

import pandas as pd
import pytest

from shelf.analytics.export import inert, to_csv_bytes


@pytest.mark.parametrize("cell", ['=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1)", "\tTab", "\rCR"])
def test_formula_cells_are_made_inert(cell):
    assert inert(cell) == "'" + cell
    text = to_csv_bytes(pd.DataFrame({"store": [cell], "count": [3]})).decode()
    parsed = pd.read_csv(io.StringIO(text), keep_default_na=False)
    assert parsed.loc[0, "store"] == "'" + cell
    assert parsed.loc[0, "count"] == 3


def test_ordinary_values_are_untouched():
    frame = pd.DataFrame({"label": ["pop bottle", "beer-bottle"], "share": [0.25, -0.5], "n": [1, -2]})
    parsed = pd.read_csv(io.BytesIO(to_csv_bytes(frame)))
    assert parsed["label"].tolist() == ["pop bottle", "beer-bottle"]
    assert parsed["share"].tolist() == [0.25, -0.5] and parsed["n"].tolist() == [1, -2]  # numbers stay numbers
