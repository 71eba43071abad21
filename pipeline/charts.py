"""The structure payoff chart, drawn by matplotlib (Agg) and returned as inline SVG text (the HTML
page draws its charts with :mod:`pipeline.svg_charts`; the backtest PNG is drawn in :mod:`pipeline.backtest`).

matplotlib is imported inside :func:`_pyplot` only, so importing this module (or the CLI) stays
cheap. Every chart is self-contained SVG: glyphs are drawn as paths (no font files), no external
images, no script. Moves and IVs are fractions and are shown in percent.
"""
from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd

WIDTH, HEIGHT = 6.4, 3.4          # inches at 72 dpi in the SVG
EXCEED_COLOUR = "#c0392b"
INSIDE_COLOUR = "#2e86c1"
BAND_COLOUR = "#f5b041"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams.update({"svg.fonttype": "path", "svg.hashsalt": "ivcrush", "font.size": 9,
                                "axes.spines.top": False, "axes.spines.right": False})
    import matplotlib.pyplot as plt

    return plt


def _svg(fig, plt, ident: str) -> str:
    """The figure as an ``<svg>`` element with document-unique ids and no XML prologue or metadata."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None,
                                                                       "Format": None, "Type": None})
    plt.close(fig)
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    # Several figures share one page: prefix their ids (clip paths, glyphs) so they cannot collide.
    text = re.sub(r'id="([^"]+)"', rf'id="{ident}-\1"', text)
    text = re.sub(r'(xlink:href|href)="#([^"]+)"', rf'\1="#{ident}-\2"', text)
    text = re.sub(r"url\(#([^)]+)\)", rf"url(#{ident}-\1)", text)
    return text


def _percent(ax, axis: str = "y"):
    from matplotlib.ticker import PercentFormatter

    getattr(ax, f"{axis}axis").set_major_formatter(PercentFormatter(1.0, decimals=None))


def payoff_at_exit(moves, pnl, breakevens=(), implied_move=None, past_moves=(), title: str = "") -> str:
    """P&L of one structure (dollars) against the underlying's move (fraction), with its
    breakevens as vertical lines, the +-implied-move band shaded and the past moves as ticks on
    the axis. ``pnl`` is one curve or a dict of named curves over ``moves`` (e.g. at exit and at
    expiry, see :func:`pipeline.stages.structures.expiry_pnl`)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT))
    fig.subplots_adjust(left=0.13, right=0.97, bottom=0.14, top=0.9)
    curves = pnl if isinstance(pnl, dict) else {"P&L": pnl}
    if implied_move is not None and np.isfinite(implied_move):
        ax.axvspan(-implied_move, implied_move, color=BAND_COLOUR, alpha=0.2, lw=0, label="implied move")
    for (name, values), colour in zip(curves.items(), (INSIDE_COLOUR, "#7f8c8d", EXCEED_COLOUR)):
        ax.plot(moves, values, color=colour, lw=1.6, label=name)
    ax.axhline(0.0, color="black", lw=0.8)
    for be in breakevens:
        if be is not None and np.isfinite(be):
            ax.axvline(be, color="#555555", lw=0.8, ls="--")
    past = np.asarray(past_moves, dtype=float)
    past = past[np.isfinite(past)]
    if past.size:
        ax.plot(past, np.zeros_like(past), "|", color=EXCEED_COLOUR, ms=12, mew=1.5, label="past moves")
    _percent(ax, "x")
    ax.set_xlabel("move of the underlying")
    ax.set_ylabel("P&L per structure ($)")
    ax.set_title(title)
    ax.legend(loc="lower center", fontsize=8, frameon=False, ncol=4)
    return _svg(fig, plt, "payoff-" + re.sub(r"[^A-Za-z0-9]+", "-", title or "chart"))
