"""One look for every figure rnnlab draws, in TensorBoard and in the manual: the Okabe–Ito
palette (its colours stay distinct under the common colour-vision deficiencies and in grey
print), one colour per role, axis labels with units, and a title that names the run.

matplotlib is imported only when a figure is drawn: importing this module costs nothing at
start-up.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.colors import Colormap
    from matplotlib.typing import RcKeyType

# Okabe & Ito, "Color Universal Design" (2008); grey as in its common extension
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky blue": "#56B4E9",
    "bluish green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish purple": "#CC79A7",
    "grey": "#999999",
}

# The same thing has the same colour in every figure.
ROLE_COLORS = {
    "history": OKABE_ITO["grey"],
    "actual": OKABE_ITO["black"],
    "forecast": OKABE_ITO["blue"],
    "seasonal naive": OKABE_ITO["vermillion"],
    "naive": OKABE_ITO["orange"],
    "best": OKABE_ITO["blue"],
    "other": OKABE_ITO["grey"],
}

# What is left over (a baseline without a role, several runs) cycles through the rest in order.
CYCLE = [OKABE_ITO[name] for name in ("orange", "sky blue", "bluish green", "reddish purple")]

STYLE: dict[RcKeyType, Any] = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#DDDDDD",
    "grid.linewidth": 0.6,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "lines.linewidth": 1.6,
}


def role_color(role: str, index: int = 0) -> str:
    """The colour of ``role`` (see ``ROLE_COLORS``); unknown roles take the ``index``-th spare."""
    return ROLE_COLORS.get(role, CYCLE[index % len(CYCLE)])


@contextlib.contextmanager
def styled() -> Iterator[None]:
    """Draw inside this block to get rnnlab's style. matplotlib reads these settings when an
    artist is created, so the whole drawing, not only ``Figure()``, belongs inside."""
    import matplotlib as mpl
    from cycler import cycler

    with mpl.rc_context():  # restores every setting on leaving
        mpl.rcParams.update(STYLE)
        mpl.rcParams["axes.prop_cycle"] = cycler(color=CYCLE)
        yield


def sequential_colormap() -> Colormap:
    """White to Okabe–Ito blue: one hue, so order reads from lightness alone (for shares,
    counts and other quantities from zero up)."""
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list("rnnlab-blue", ["#FFFFFF", OKABE_ITO["blue"]])


def title(what: str, run: str) -> str:
    """A figure title: what it shows, then which run it comes from."""
    return f"{what} — {run}" if run else what


def with_unit(label: str, unit: str | None) -> str:
    """An axis label with its unit in parentheses, when the unit is known."""
    return f"{label} ({unit})" if unit else label
