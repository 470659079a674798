"""Figures as hand-written SVG (no plotting dependency): grouped bars with error bars, and lines over a shared x.

    svg = bars("DPO data sources", groups=["math", "chat"], series={"uf_fine": [(0.5, 0.02), (0.6, 0.03)]},
               ylabel="ground-truth score")
    open("fig.svg", "w").write(svg)
"""
import html
import math

PALETTE = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")
W, H, LEFT, RIGHT, TOP, BOTTOM = 720, 360, 64, 160, 36, 56  # canvas and margins (legend on the right)


def _ticks(lo, hi, n=5):
    """About n round tick values covering [lo, hi]."""
    step = 10 ** math.floor(math.log10(max(hi - lo, 1e-9) / n))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if (hi - lo) / (step * m) <= n)
    first = math.floor(lo / step) * step
    ticks = [round(first + i * step, 10) for i in range(int((hi - first) / step) + 2)]
    return [t for t in ticks if lo - 1e-9 <= t <= hi + 1e-9]


def _frame(title, ylabel, lo, hi, xlabel=""):
    """The canvas, title, y axis with gridlines and labels; -> (parts, y(value) -> pixel)."""
    y = lambda v: TOP + (H - TOP - BOTTOM) * (1 - (v - lo) / (hi - lo))  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
             f'font-family="sans-serif" font-size="12">', f'<rect width="{W}" height="{H}" fill="white"/>',
             f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">{_e(title)}</text>',
             f'<text transform="translate(16,{(TOP + H - BOTTOM) / 2}) rotate(-90)" text-anchor="middle">'
             f'{_e(ylabel)}</text>']
    if xlabel:
        parts.append(f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 8}" text-anchor="middle">{_e(xlabel)}</text>')
    for t in _ticks(lo, hi):
        parts.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
    parts.append(f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{H - BOTTOM}" stroke="black"/>')
    parts.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{H - BOTTOM}" y2="{H - BOTTOM}" stroke="black"/>')
    return parts, y


def _legend(parts, names):
    for i, name in enumerate(names):
        yy = TOP + 8 + 18 * i
        parts.append(f'<rect x="{W - RIGHT + 12}" y="{yy - 9}" width="12" height="12" '
                     f'fill="{PALETTE[i % len(PALETTE)]}"/>')
        parts.append(f'<text x="{W - RIGHT + 30}" y="{yy + 1}">{_e(name)}</text>')


def _e(s):
    return html.escape(str(s))


def bars(title, groups, series, ylabel="", lo=None, hi=None):
    """Grouped bars: groups along x (e.g. categories), one bar per series in each group, with +-1 error bars.
    series: {name: [(mean, stderr) per group]}; a None entry leaves its bar out."""
    vals = [(m, s) for v in series.values() for ms in v if ms is not None for m, s in [ms]]
    lo = min([0.0] + [m - s for m, s in vals]) if lo is None else lo
    hi = max(m + s for m, s in vals) * 1.08 if hi is None else hi
    parts, y = _frame(title, ylabel, lo, hi)
    gw = (W - LEFT - RIGHT) / len(groups)
    bw = gw * 0.8 / len(series)
    for g, group in enumerate(groups):
        x0 = LEFT + g * gw + gw * 0.1
        parts.append(f'<text x="{LEFT + (g + 0.5) * gw:.1f}" y="{H - BOTTOM + 18}" text-anchor="middle">'
                     f'{_e(group)}</text>')
        for i, values in enumerate(series.values()):
            if values[g] is None:
                continue
            m, s = values[g]
            x, top, base = x0 + i * bw, y(max(m, lo)), y(max(lo, 0.0) if lo <= 0 else lo)
            parts.append(f'<rect x="{x:.1f}" y="{min(top, base):.1f}" width="{bw * 0.92:.1f}" '
                         f'height="{abs(base - top):.1f}" fill="{PALETTE[i % len(PALETTE)]}"><title>{m:.3f} ± '
                         f'{s:.3f}</title></rect>')
            cx = x + bw * 0.46
            parts.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(m - s):.1f}" y2="{y(m + s):.1f}" '
                         f'stroke="black" stroke-width="1.5"/>')
            for v in (m - s, m + s):
                parts.append(f'<line x1="{cx - 4:.1f}" x2="{cx + 4:.1f}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                             f'stroke="black" stroke-width="1.5"/>')
    _legend(parts, list(series))
    return "\n".join(parts + ["</svg>"]) + "\n"


def lines(title, series, xlabel="", ylabel=""):
    """Lines with markers: series {name: [(x, y), ...]}, a shared x axis (drawn with its own ticks)."""
    pts = [p for v in series.values() for p in v]
    xlo, xhi = min(p[0] for p in pts), max(p[0] for p in pts)
    ylo, yhi = min(p[1] for p in pts), max(p[1] for p in pts)
    pad = (yhi - ylo) * 0.08 or 1.0
    xhi = xhi if xhi > xlo else xlo + 1
    parts, y = _frame(title, ylabel, ylo - pad, yhi + pad, xlabel)
    x = lambda v: LEFT + (W - LEFT - RIGHT) * (v - xlo) / (xhi - xlo)  # noqa: E731
    for t in _ticks(xlo, xhi):
        if t >= xlo:
            parts.append(f'<text x="{x(t):.1f}" y="{H - BOTTOM + 16}" text-anchor="middle">{t:g}</text>')
    for i, (name, v) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        path = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in v)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        parts += [f'<circle cx="{x(a):.1f}" cy="{y(b):.1f}" r="3" fill="{color}"/>' for a, b in v]
    _legend(parts, list(series))
    return "\n".join(parts + ["</svg>"]) + "\n"
