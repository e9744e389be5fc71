"""Results tables with a row index, in the book's one table style.

:func:`pilcro_lib.results.table_style` draws a DataFrame without its index; the chapters' tables
of per-seed values (:func:`pilcro_lib.protocol.per_seed_table`), run-length ladders and
choices on validation carry their row names in the index, often on two levels (task and arm).
:func:`indexed_table` shows such a table: the index levels as the leading columns (a label
repeated on the rows below it shown once), numbers with the digits the quantity deserves, and
empty cells where a value was not measured (a seed an arm did not need).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pilcro_lib.results import StyledTable, table_style
from pilcro_lib.utils import check_positive_int, check_type


def two_level(table, names: Sequence[str]):
    """``table`` with a two-level row index named ``names``.

    table: a DataFrame whose rows are keyed by pairs ``(first, second)`` or by strings
    ``"first: second"``. Returns a copy; raises ``ValueError`` naming a key that is neither.
    """
    import pandas as pd

    check_type("table", table, pd.DataFrame, "a pandas DataFrame")
    if len(names) != 2:
        raise ValueError(f"names must be two level names, got {list(names)!r}")
    keys = []
    for key in table.index:
        pair = tuple(key.split(": ", 1)) if isinstance(key, str) else tuple(key)
        if len(pair) != 2:
            raise ValueError(f"row {key!r} is neither a pair nor a string 'first: second'")
        keys.append(pair)
    out = table.copy()
    out.index = pd.MultiIndex.from_tuples(keys, names=list(names))
    return out


def _cell(value: Any, digits: int, integer: bool) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool):
        return "yes" if value else "no"
    value = float(value)
    if math.isnan(value):
        return ""
    text = f"{value:,.0f}" if integer else f"{value:,.{digits}f}"
    return text[1:] if text.startswith("-") and float(text[1:].replace(",", "")) == 0 else text


def indexed_table(
    table,
    *,
    digits: int | Mapping[str, int] = 2,
    integers: Sequence[str] = ("n",),
    row_digits: Mapping[Any, int] | None = None,
    colours: Mapping[str, Mapping[str, tuple[str, str]]] | None = None,
    caption: str | None = None,
) -> StyledTable:
    """``table`` (a DataFrame with a named row index, one or more levels) in the book's style.

    The index levels become the first columns (named by the levels; a repeated label of any
    level but the last is shown on its first row only); numbers get ``digits`` decimals (one
    number for every column, or a mapping column -> decimals, 2 for the others), the columns in
    ``integers`` (those the table has) none; ``row_digits`` maps a label of the first index level
    to the decimals of every other number of its rows (for tables whose rows hold different
    quantities). NaN and ``None`` are empty cells, booleans read yes/no, strings stay;
    ``colours``: column -> {cell text -> (text colour, background)}, e.g. for verdicts.
    Returns a :class:`pilcro_lib.results.StyledTable` (its ``frame``: the cells as text).
    """
    import pandas as pd

    check_type("table", table, pd.DataFrame, "a pandas DataFrame")
    levels = [str(n) if n is not None else "" for n in table.index.names]
    if len(set(levels)) != len(levels):
        raise ValueError(f"the index levels need distinct names, got {table.index.names!r}")
    clash = [c for c in map(str, table.columns) if c in levels]
    if clash:
        raise ValueError(f"columns {clash} have the names of index levels")
    per_column = digits if isinstance(digits, Mapping) else {}
    unknown = [c for c in per_column if c not in table.columns]
    if unknown:
        raise ValueError(f"digits names columns {unknown} that the table lacks")
    default = 2 if isinstance(digits, Mapping) else check_positive_int("digits", digits, 0)
    rows = []
    previous: tuple = ()
    for key, values in zip(table.index, table.itertuples(index=False)):
        key = key if isinstance(key, tuple) else (key,)
        labels = [
            "" if i < len(key) - 1 and key[: i + 1] == previous[: i + 1] else str(part)
            for i, part in enumerate(key)
        ]
        previous = key
        row = (row_digits or {}).get(key[0])
        cells = {
            str(c): _cell(v, per_column.get(c, default) if row is None else row, c in integers)
            for c, v in zip(table.columns, values)
        }
        rows.append({**dict(zip(levels, labels)), **cells})
    shown = pd.DataFrame(rows, columns=[*levels, *map(str, table.columns)])
    return table_style(shown, caption=caption, left=levels, colours=colours)
