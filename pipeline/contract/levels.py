"""The move levels of the exceedance columns (config ``density.exceed_levels``): their names in
column suffixes and the column blocks they expand to. Levels are fractions: 0.05 is a 5% move."""
from __future__ import annotations

import re

# The move levels of the exceedance columns when the config names none (``density.exceed_levels``).
DEFAULT_EXCEED_LEVELS = (0.05, 0.10)


def level_name(level: float) -> str:
    """Column suffix of a move level (a fraction): 0.05 -> '5pct', 0.075 -> '7p5pct'."""
    return f"{round(level * 100, 6):g}pct".replace(".", "p")


DEFAULT_LEVEL_SUFFIXES = tuple(level_name(v) for v in DEFAULT_EXCEED_LEVELS)
# Exceedance columns at a configured move level: rn_p_exceed_<suffix>, hist_p_exceed_<suffix>.
LEVEL_SUFFIX_PATTERN = r"\d+(?:p\d+)?pct"
EXCEED_LEVEL_COLUMN = re.compile(rf"^(rn|hist)_p_exceed_({LEVEL_SUFFIX_PATTERN})$")


def level_pairs(suffixes) -> list[str]:
    """The exceedance columns of the level ``suffixes``, risk-neutral then historical per level."""
    return [f"{side}_p_exceed_{suffix}" for suffix in suffixes for side in ("rn", "hist")]


def with_levels(columns: list[str], suffixes) -> list[str]:
    """``columns`` (which hold the default levels' :func:`level_pairs` as one block) with that
    block replaced by the pairs of the level ``suffixes`` (the default ones when empty)."""
    default = level_pairs(DEFAULT_LEVEL_SUFFIXES)
    first = columns.index(default[0])
    return [*columns[:first], *level_pairs(suffixes or DEFAULT_LEVEL_SUFFIXES), *columns[first + len(default):]]


def exceed_levels_in(columns) -> list[str]:
    """Suffixes (``5pct``) of the level columns ``rn_p_exceed_<suffix>`` in ``columns``, in order."""
    found = (EXCEED_LEVEL_COLUMN.match(str(c)) for c in columns)
    return [m.group(2) for m in found if m and m.group(1) == "rn"]
