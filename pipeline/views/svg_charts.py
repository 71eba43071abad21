"""Small inline SVG charts of the HTML page, drawn directly (no matplotlib).

Every event of the page has its own charts, and the 5,000-name daily has hundreds of events:
a matplotlib figure costs about 50 ms, these cost well under 1 ms each, so the page takes the
same time per event whatever the universe. Text stays text (``<text>``), so axis labels can be
read back; every piece of data-derived text passes :func:`_text` (escaped). Values are
fractions; percent axes choose enough decimals for their tick step (2.5% stays 2.5%).
"""
from __future__ import annotations

import math

import numpy as np
from markupsafe import Markup, escape

from pipeline.kernel.ticks import nice_ticks

EXCEED = "#c0392b"
INSIDE = "#2e86c1"
BAND = "#f5b041"
GREY = "#7f8c8d"
TIER_COLOUR = {"EXCELLENT": "#1e8449", "GOOD": "#2e86c1", "MARGINAL": "#b7950b", "SKIP": "#7f8c8d"}
W, H = 360, 190                         # px of one event chart
MARGIN = (44, 10, 22, 30)               # left, right, top, bottom


def _text(value) -> str:
    return str(escape(str(value)))


def percent_decimals(ticks: np.ndarray) -> int:
    """The fewest decimals that write every tick in percent exactly (0.025 -> 1: "2.5%")."""
    for decimals in range(0, 7):
        # max |error| <= 1e-9 (np.allclose with rtol=0, without its per-call overhead: every axis asks)
        if np.abs(np.round(ticks * 100, decimals) - ticks * 100).max(initial=0.0) <= 1e-9:
            return decimals
    return 6


def percent_labels(ticks: np.ndarray) -> list[str]:
    decimals = percent_decimals(ticks)
    return [f"{v * 100:.{decimals}f}%" for v in ticks]


def number_labels(ticks: np.ndarray) -> list[str]:
    decimals = next((d for d in range(0, 7) if np.abs(np.round(ticks, d) - ticks).max(initial=0.0) <= 1e-9), 6)
    return [f"{v:.{decimals}f}" for v in ticks]


class Plot:
    """A chart box mapping data (x, y) to pixels, with the axes, ticks and labels drawn."""

    def __init__(self, xlim, ylim, width=W, height=H, xpercent=False, ypercent=True, xticks=None, yticks=None):
        self.width, self.height = width, height
        self.left, self.right, self.top, self.bottom = MARGIN
        self.xt = nice_ticks(*xlim) if xticks is None else np.asarray(xticks, float)
        self.yt = nice_ticks(*ylim)
        self.x0, self.x1 = (min(self.xt[0], xlim[0]), max(self.xt[-1], xlim[1])) if xticks is None else xlim
        self.y0, self.y1 = float(self.yt[0]), float(self.yt[-1])
        self.xpercent, self.ypercent = xpercent, ypercent
        self.parts: list[str] = []

    def x(self, value):
        span = (self.x1 - self.x0) or 1.0
        return self.left + (np.asarray(value, float) - self.x0) / span * (self.width - self.left - self.right)

    def y(self, value):
        span = (self.y1 - self.y0) or 1.0
        return self.height - self.bottom - (np.asarray(value, float) - self.y0) / span * (
            self.height - self.top - self.bottom)

    def axes(self, title: str, xlabels=None) -> None:
        px0, px1, py0, py1 = self.left, self.width - self.right, self.height - self.bottom, self.top
        out = [f'<text x="{self.width / 2:.0f}" y="13" class="ct">{_text(title)}</text>']
        ylabels = percent_labels(self.yt) if self.ypercent else number_labels(self.yt)
        for value, label in zip(self.yt, ylabels):
            py = float(self.y(value))
            out.append(f'<line x1="{px0}" x2="{px1}" y1="{py:.1f}" y2="{py:.1f}" class="grid"/>'
                       f'<text x="{px0 - 4}" y="{py + 3:.1f}" class="ty" data-value="{float(value)!r}">{label}</text>')
        if xlabels is None:
            xlabels = percent_labels(self.xt) if self.xpercent else number_labels(self.xt)
        for value, label in zip(self.xt, xlabels):
            px = float(self.x(value))
            out.append(f'<text x="{px:.1f}" y="{py0 + 12}" class="tx" data-value="{float(value)!r}">{_text(label)}</text>')
        out.append(f'<line x1="{px0}" x2="{px1}" y1="{py0}" y2="{py0}" class="axis"/>'
                   f'<line x1="{px0}" x2="{px0}" y1="{py0}" y2="{py1}" class="axis"/>')
        self.parts[:0] = out

    def line(self, xs, ys, colour, dash: str | None = None, width: float = 1.2, cls: str = "") -> None:
        xs, ys = np.asarray(xs, float), np.asarray(ys, float)
        keep = np.isfinite(xs) & np.isfinite(ys)
        if keep.sum() < 2:
            return
        points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(self.x(xs[keep]), self.y(ys[keep])))
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        self.parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="{width}"'
                          f'{extra} class="{cls}"/>')

    def dots(self, xs, ys, colour, radius: float = 2.5, hollow: bool = False, cls: str = "pt") -> None:
        fill = "none" if hollow else colour
        for a, b in zip(self.x(xs), self.y(ys)):
            if math.isfinite(a) and math.isfinite(b):
                self.parts.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="{radius}" fill="{fill}" '
                                  f'stroke="{colour}" class="{cls}"/>')

    def label(self, x, y, text: str, cls: str = "lab", dx: float = 3, dy: float = -3) -> None:
        self.parts.append(f'<text x="{float(self.x(x)) + dx:.1f}" y="{float(self.y(y)) + dy:.1f}" '
                          f'class="{cls}">{_text(text)}</text>')

    def legend(self, items: list[tuple[str, str]], bottom: bool = False) -> None:
        """Top left, or (``bottom``) bottom right where a curve above a floor at 0 leaves room."""
        x = self.width - self.right - 120 if bottom else self.left + 6
        first = self.height - self.bottom - 6 - 11 * (len(items) - 1) if bottom else self.top + 10
        for i, (colour, text) in enumerate(items):
            y = first + 11 * i
            self.parts.append(f'<rect x="{x}" y="{y - 7}" width="8" height="8" fill="{colour}"/>'
                              f'<text x="{x + 11}" y="{y}" class="lab">{_text(text)}</text>')

    def svg(self, cls: str) -> Markup:
        return Markup(f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {cls}" width="{self.width}" '
                      f'height="{self.height}" viewBox="0 0 {self.width} {self.height}">{"".join(self.parts)}</svg>')


def past_moves(values: np.ndarray, labels: list[str], implied_move: float, move_label: str) -> Markup:
    """The past reports' signed moves (oldest left, class ``bar``; beyond the implied move also
    ``beyond``) against the band +/- today's implied move."""
    values = np.asarray(values, float)
    finite_implied = math.isfinite(implied_move)
    reach = max(float(np.nanmax(np.abs(values))) if values.size else 0.0, implied_move if finite_implied else 0.0,
                0.01)
    plot = Plot((0, max(values.size, 1)), (-reach, reach), xticks=[])
    beyond = np.abs(values) > implied_move if finite_implied else np.zeros(values.size, bool)
    if finite_implied:
        top, bottom = float(plot.y(implied_move)), float(plot.y(-implied_move))
        plot.parts.append(f'<rect x="{plot.left}" y="{top:.1f}" width="{plot.width - plot.left - plot.right}" '
                          f'height="{bottom - top:.1f}" fill="{BAND}" opacity="0.3" class="band"/>')
    slot = (plot.width - plot.left - plot.right) / max(values.size, 1)
    zero = float(plot.y(0))
    for i, (value, out) in enumerate(zip(values, beyond)):
        if not math.isfinite(value):
            continue
        y = float(plot.y(value))
        plot.parts.append(f'<rect x="{plot.left + slot * (i + 0.15):.1f}" y="{min(y, zero):.1f}" '
                          f'width="{slot * 0.7:.1f}" height="{abs(zero - y):.1f}" fill="{EXCEED if out else INSIDE}" '
                          f'class="bar{" beyond" if out else ""}"><title>{_text(labels[i])}: '
                          f'{value * 100:.2f}%</title></rect>')
    plot.parts.append(f'<line x1="{plot.left}" x2="{plot.width - plot.right}" y1="{zero:.1f}" y2="{zero:.1f}" '
                      f'class="axis"/>')
    for i in range(0, values.size, max(1, values.size // 6)):
        plot.parts.append(f'<text x="{plot.left + slot * (i + 0.5):.1f}" y="{plot.height - plot.bottom + 12}" '
                          f'class="tx">{_text(labels[i])}</text>')
    plot.axes(f"past reports: {int(beyond.sum())} of {values.size} beyond implied"
              + (f" {implied_move * 100:.2f}%" if finite_implied else ""))
    plot.legend([(BAND, "implied move band"), (EXCEED, "beyond"), (INSIDE, "inside")][0 if finite_implied else 1:])
    return plot.svg("moves")


def term_structure(days: np.ndarray, atm_iv: np.ndarray, ex_earnings_vol: float, reaction_days: float,
                   iv30: float = float("nan")) -> Markup:
    """ATM IV per expiration (days from the as-of date), the ex-earnings vol and the reaction session."""
    days, atm_iv = np.asarray(days, float), np.asarray(atm_iv, float)
    values = [v for v in (*atm_iv, ex_earnings_vol, iv30) if math.isfinite(v)]
    top = max(values) if values else 0.5
    xmax = max(float(np.nanmax(days)) if days.size else 30.0, reaction_days if math.isfinite(reaction_days) else 0, 35)
    plot = Plot((0, xmax), (0, top * 1.1))
    if math.isfinite(ex_earnings_vol):
        plot.line([0, xmax], [ex_earnings_vol, ex_earnings_vol], EXCEED, dash="4 3", cls="exvol")
    if math.isfinite(reaction_days):
        x = float(plot.x(reaction_days))
        plot.parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{plot.top}" y2="{plot.height - plot.bottom}" '
                          f'stroke="{GREY}" stroke-dasharray="2 2" class="reaction"/>')
    plot.line(days, atm_iv, INSIDE)
    plot.dots(days, atm_iv, INSIDE)
    if math.isfinite(iv30):
        plot.dots([30], [iv30], "#1b2631", radius=3.5, hollow=True, cls="iv30")
    plot.axes("ATM implied vol by days to expiration")
    items = [(INSIDE, "ATM IV")]
    if math.isfinite(ex_earnings_vol):
        items.append((EXCEED, f"ex-earnings vol {ex_earnings_vol * 100:.1f}%"))
    if math.isfinite(reaction_days):
        items.append((GREY, "reaction session"))
    if math.isfinite(iv30):
        items.append(("#1b2631", f"30-day IV {iv30 * 100:.1f}%"))
    plot.legend(items, bottom=True)
    return plot.svg("term")


def smile(k: np.ndarray, ivs: np.ndarray, curve_k: np.ndarray, curve_iv: np.ndarray) -> Markup:
    """The event expiration's OTM quotes (puts left of the forward, calls right) and the fitted
    smile, IV against log-moneyness k = ln(K/F) in percent."""
    k, ivs = np.asarray(k, float), np.asarray(ivs, float)
    curve_k, curve_iv = np.asarray(curve_k, float), np.asarray(curve_iv, float)
    fitted = np.isfinite(curve_iv)
    xs = np.concatenate([k, curve_k[fitted]])
    ys = np.concatenate([ivs, curve_iv[fitted]])
    ys = ys[np.isfinite(ys)]
    lo, hi = (float(np.nanmin(xs)), float(np.nanmax(xs))) if xs.size else (-0.1, 0.1)
    plot = Plot((min(lo, 0.0), max(hi, 0.0)), (max(0.0, float(ys.min()) * 0.9) if ys.size else 0,
                                                float(ys.max()) * 1.05 if ys.size else 1), xpercent=True)
    plot.line(curve_k, curve_iv, EXCEED, cls="fit")
    puts = k < 0
    plot.dots(k[puts], ivs[puts], INSIDE, cls="pt quote")
    plot.dots(k[~puts], ivs[~puts], "#1e8449", cls="pt quote")
    x = float(plot.x(0.0))
    plot.parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{plot.top}" y2="{plot.height - plot.bottom}" '
                      f'stroke="{GREY}" stroke-dasharray="2 2"/>')
    plot.axes("event expiration smile: IV by ln(strike / forward)")
    plot.legend([(INSIDE, "OTM put"), ("#1e8449", "OTM call"), (EXCEED, "quadratic fit")])
    return plot.svg("smile")


def vrp_scatter(hist: np.ndarray, implied: np.ndarray, tiers: list, tickers: list, vrp_lines: dict,
                label_top: int = 12) -> Markup:
    """Signal-implied move (signal VRP x historical mean) against the historical mean |move|, one
    point per event coloured by its VRP tier, with the lines implied = v x historical."""
    hist, implied = np.asarray(hist, float), np.asarray(implied, float)
    keep = np.isfinite(hist) & np.isfinite(implied)
    top_x = float(max(hist[keep].max() if keep.any() else 0.05, 0.01))
    top_y = float(max(implied[keep].max() if keep.any() else 0.05, top_x * max(vrp_lines.values()) * 0.6))
    plot = Plot((0, top_x * 1.05), (0, top_y * 1.05), width=640, height=400, xpercent=True)
    xs = np.array([0, plot.x1])
    for (name, v), dash in zip(vrp_lines.items(), [None, "5 3", "2 2", "6 2 2 2"]):
        plot.line(xs, v * xs, GREY, dash=dash, width=0.9, cls="vrpline")
        end = min(plot.x1, plot.y1 / v)
        plot.label(end, v * end, f"{name} {v:g}", dx=-60, dy=-4)
    for tier, colour in TIER_COLOUR.items():
        mask = keep & np.array([t == tier for t in tiers], bool)
        plot.dots(hist[mask], implied[mask], colour, radius=3, cls=f"pt t-{tier}")
    for i in np.flatnonzero(keep)[:label_top]:
        plot.label(hist[i], implied[i], tickers[i])
    plot.axes("Signal-implied against historical move (colour: VRP tier)")
    plot.legend([(c, t) for t, c in TIER_COLOUR.items()])
    return plot.svg("scatter")


def payoff(moves: np.ndarray, pnl: np.ndarray, breakevens: np.ndarray, expiry_moves: np.ndarray,
           expiry_pnl: np.ndarray, implied_move: float, past: np.ndarray, title: str) -> Markup:
    """One structure's P&L in dollars per structure against the underlying's move (fractions,
    sorted), the two curves of the stored ``payoff`` rows: at the exit close (``pnl`` at ``moves``;
    solid, class ``pnl``) and held to expiry (``expiry_pnl`` at ``expiry_moves``; dashed, class
    ``pnl-expiry``), with the exit breakevens (moves; class ``breakeven``,
    ``data-value`` the move), the +/- implied-move band and the past reports' moves as ticks on
    the zero line (class ``past``)."""
    moves, pnl = np.asarray(moves, float), np.asarray(pnl, float)
    expiry_moves, expiry_pnl = np.asarray(expiry_moves, float), np.asarray(expiry_pnl, float)
    breakevens = np.asarray(breakevens, float)
    breakevens = breakevens[np.isfinite(breakevens)]
    past = np.asarray(past, float)
    past = past[np.isfinite(past)]
    both = np.concatenate([pnl, expiry_pnl])
    finite = both[np.isfinite(both)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 1.0)
    xs = np.concatenate([moves, expiry_moves])
    xs = xs[np.isfinite(xs)]
    plot = Plot((float(xs.min()), float(xs.max())) if xs.size else (-0.1, 0.1),
                (min(low, 0.0), max(high, 0.0)), xpercent=True, ypercent=False)
    if math.isfinite(implied_move):
        left, right = float(plot.x(max(-implied_move, plot.x0))), float(plot.x(min(implied_move, plot.x1)))
        plot.parts.append(f'<rect x="{left:.1f}" y="{plot.top}" width="{right - left:.1f}" '
                          f'height="{plot.height - plot.top - plot.bottom}" fill="{BAND}" opacity="0.25" class="band"/>')
    zero = float(plot.y(0.0))
    plot.parts.append(f'<line x1="{plot.left}" x2="{plot.width - plot.right}" y1="{zero:.1f}" y2="{zero:.1f}" '
                      f'class="axis zero"/>')
    for value in breakevens:
        x = float(plot.x(value))
        plot.parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{plot.top}" y2="{plot.height - plot.bottom}" '
                          f'stroke="{GREY}" stroke-dasharray="4 2" class="breakeven" data-value="{float(value)!r}">'
                          f'<title>breakeven at exit {value * 100:+.2f}%</title></line>')
    plot.line(moves, pnl, INSIDE, width=2.2, cls="pnl")
    plot.line(expiry_moves, expiry_pnl, "#1b2631", dash="5 3", width=1.0, cls="pnl-expiry")
    inside = past[(past >= plot.x0) & (past <= plot.x1)]
    for value in inside:
        x = float(plot.x(value))
        plot.parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{zero - 5:.1f}" y2="{zero + 5:.1f}" '
                          f'stroke="{EXCEED}" stroke-width="1.5" class="past"/>')
    plot.axes(title)
    items = [(INSIDE, "P&L at exit ($, solid)"), ("#1b2631", "at expiry (dashed)"), (GREY, "breakeven at exit")]
    if math.isfinite(implied_move):
        items.append((BAND, "implied move band"))
    if inside.size:
        items.append((EXCEED, "past moves"))
    plot.legend(items)      # top left: a short-vol payoff is low at the left edge
    return plot.svg("payoff")
