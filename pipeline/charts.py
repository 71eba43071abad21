"""Charts of the HTML report, drawn by matplotlib (Agg) and returned as inline SVG text.

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


def vrp_scatter(frame: pd.DataFrame, vrp_lines=(1.0, 1.2, 1.8), label_top: int = 10) -> str:
    """Implied move against historical mean absolute move, one point per event, with the lines
    implied = v * historical for each v in ``vrp_lines``; the ``label_top`` best ranks are named."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT + 0.8))
    fig.subplots_adjust(left=0.11, right=0.97, bottom=0.12, top=0.92)
    data = frame.dropna(subset=["implied_move", "hist_mean_abs_move"])
    top = float(max(data["hist_mean_abs_move"].max(), data["implied_move"].max() / max(vrp_lines), 0.01)) \
        if len(data) else 0.1
    xs = np.array([0.0, top * 1.05])
    for v, style in zip(vrp_lines, ["-", "--", ":", "-."]):
        ax.plot(xs, v * xs, style, color="grey", linewidth=0.9, label=f"VRP = {v:g}")
    tradeable = data["liquidity_tier"].ne("REJECT") if "liquidity_tier" in data else pd.Series(True, data.index)
    ax.scatter(data.loc[tradeable, "hist_mean_abs_move"], data.loc[tradeable, "implied_move"], s=18,
               color=INSIDE_COLOUR, label="event")
    ax.scatter(data.loc[~tradeable, "hist_mean_abs_move"], data.loc[~tradeable, "implied_move"], s=18,
               facecolors="none", edgecolors=EXCEED_COLOUR, label="REJECT liquidity")
    for _, row in data.nsmallest(label_top, "rank").iterrows() if "rank" in data else []:
        ax.annotate(row["ticker"], (row["hist_mean_abs_move"], row["implied_move"]), fontsize=7,
                    xytext=(3, 2), textcoords="offset points")
    ax.set_xlim(0, xs[-1])
    ax.set_ylim(0, None)
    ax.set_xlabel("historical mean |move|")
    ax.set_ylabel("implied move (straddle)")
    _percent(ax, "x")
    _percent(ax, "y")
    ax.legend(loc="upper left", fontsize=7, frameon=False)
    ax.set_title("Implied against historical move")
    return _svg(fig, plt, "scatter")


def past_moves_bars(ticker: str, moves: pd.DataFrame, implied_move: float, move_type: str = "close_move",
                    ident: str | None = None) -> str:
    """The past reports' signed moves (oldest left) against the band +/- today's implied move;
    bars outside the band (|move| > implied) are red."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT * 0.8))
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.2, top=0.9)
    values = moves[move_type].to_numpy(float)
    labels = pd.to_datetime(moves["report_date"]).dt.strftime("%y-%m").to_numpy()
    if np.isfinite(implied_move):
        ax.axhspan(-implied_move, implied_move, color=BAND_COLOUR, alpha=0.25, linewidth=0,
                   label=f"implied move +/-{implied_move:.1%}")
        exceeded = np.abs(values) > implied_move
    else:
        exceeded = np.zeros(values.size, dtype=bool)
    ax.bar(np.arange(values.size), values, color=np.where(exceeded, EXCEED_COLOUR, INSIDE_COLOUR), width=0.7)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks(np.arange(values.size), labels, rotation=60, fontsize=7)
    _percent(ax, "y")
    ax.set_ylabel(move_type.replace("_", " "))
    ax.set_title(f"{ticker}: past reports ({int(exceeded.sum())} of {values.size} beyond implied)")
    if np.isfinite(implied_move):
        ax.legend(loc="upper left", fontsize=7, frameon=False)
    return _svg(fig, plt, ident or f"bars-{ticker}")


def term_structure_chart(ticker: str, atm: pd.DataFrame, as_of, reaction_date=None,
                         ex_earnings_vol: float = float("nan"), ident: str | None = None) -> str:
    """ATM IV per expiration (days from the as-of date) with the ex-earnings vol as a line and the
    reaction session marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT * 0.8))
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.16, top=0.9)
    as_of = pd.Timestamp(as_of)
    days = (pd.to_datetime(atm["expiration"]) - as_of).dt.days.to_numpy()
    ax.plot(days, atm["atm_iv"].to_numpy(float), "o-", color=INSIDE_COLOUR, markersize=4, label="ATM IV")
    if np.isfinite(ex_earnings_vol):
        ax.axhline(ex_earnings_vol, color=EXCEED_COLOUR, linestyle="--", linewidth=1,
                   label=f"ex-earnings vol {ex_earnings_vol:.1%}")
    if reaction_date is not None and not pd.isna(reaction_date):
        ax.axvline((pd.Timestamp(reaction_date) - as_of).days, color="grey", linestyle=":", linewidth=1,
                   label="reaction session")
    ax.set_xlabel("days to expiration")
    ax.set_ylabel("implied vol (annual)")
    ax.set_ylim(0, None)
    _percent(ax, "y")
    ax.legend(loc="lower left", fontsize=7, frameon=False)
    ax.set_title(f"{ticker}: term structure")
    return _svg(fig, plt, ident or f"term-{ticker}")


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
