import math
import re

import numpy as np
import pandas as pd
import pytest

from pilcro_lib.protocol import per_seed_table
from pilcro_lib.report_tables import indexed_table, two_level


def test_two_level_splits_pairs_and_strings():
    table = pd.DataFrame({"x": [1, 2]}, index=[("real", "conv"), "aligned: LRLC K=8"])
    out = two_level(table, ["task", "arm"])
    assert list(out.index) == [("real", "conv"), ("aligned", "LRLC K=8")]
    assert out.index.names == ["task", "arm"] and list(table.index)[1] == "aligned: LRLC K=8"
    with pytest.raises(ValueError, match="neither a pair"):
        two_level(pd.DataFrame({"x": [1]}, index=["no colon"]), ["task", "arm"])


def test_indexed_table_shows_each_seed_with_its_digits_and_blanks():
    values = {("real", "conv"): {0: 85.12, 1: 85.58}, ("real", "LC"): {0: 84.1}}
    table = two_level(per_seed_table(values), ["task", "arm"])
    shown = indexed_table(table, digits=1).frame
    assert list(shown.columns) == ["task", "arm", "seed 0", "seed 1", "mean", "std", "n"]
    # the task is named on its first row only; a seed an arm did not need is an empty cell
    assert shown["task"].tolist() == ["real", ""]
    assert shown.iloc[0].tolist()[2:] == ["85.1", "85.6", "85.3", "0.3", "2"]
    assert shown.iloc[1, 3] == "" and shown.iloc[1, 6] == "1"
    mean = np.mean([85.12, 85.58])
    assert shown.loc[0, "mean"] == f"{mean:.1f}"


def test_indexed_table_digits_by_column_and_by_row():
    table = pd.DataFrame(
        {"a": [0.12345, 2.5], "b": [1234.5, math.nan], "n": [3, 4], "ok": [True, False]},
        index=pd.Index(["curvature", "time"], name="figure"),
    )
    shown = indexed_table(table, digits={"a": 3}).frame
    assert shown["a"].tolist() == ["0.123", "2.500"] and shown["b"].tolist() == ["1,234.50", ""]
    assert shown["ok"].tolist() == ["yes", "no"] and shown["n"].tolist() == ["3", "4"]
    by_row = indexed_table(table, row_digits={"time": 0}).frame
    assert by_row["a"].tolist() == ["0.12", "2"]  # round half to even, as Python formats
    with pytest.raises(ValueError, match="lacks"):
        indexed_table(table, digits={"z": 1})


def test_indexed_table_is_html_in_the_book_style_with_a_caption():
    table = pd.DataFrame({"value": ["0.3"]}, index=pd.Index(["λ"], name="setting"))
    html = indexed_table(table, caption="Set-up").html
    assert "<caption>Set-up</caption>" in html
    assert re.search(r"<th[^>]*>setting</th>", html) and ">λ<" in html
    with pytest.raises(ValueError, match="names of index levels"):
        indexed_table(table.rename(columns={"value": "setting"}))
