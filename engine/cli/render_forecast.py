"""The forecast of ``seqrun simulate`` (engine.views.forecast): two tables, a few lines, and
``--chart FILE``: a self-contained HTML page of inline SVG (no script, no network), or a PNG
drawn by matplotlib (the optional extra ``seqrun[chart]``, imported only then)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING

from engine.cli import render
from engine.errors import UsageError

if TYPE_CHECKING:
    from engine.views.forecast import DayLoad, Forecast

CHART_SUFFIXES = (".html", ".png")
_BACKLOG = ("limit", "window", "other", "wait_step")


def check_chart(path: Path) -> None:
    """UsageError for a format we do not draw, or a PNG without matplotlib installed."""
    suffix = path.suffix.lower()
    if suffix not in CHART_SUFFIXES:
        raise UsageError(f"--chart {path}: expected a .html or .png file")
    if suffix == ".png":
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UsageError(f"--chart {path}: a .png needs matplotlib: pip install "
                             "'seqrun[chart]' (or draw a .html chart, which needs nothing)"
                             ) from None


def busy_days(fc: Forecast) -> list[DayLoad]:
    """The days up to the last one with an action or a lead still waiting (idle tail cut)."""
    last = 0
    for i, d in enumerate(fc.days):
        if d.total or any(d.backlog.values()):
            last = i
    return fc.days[: last + 1]


def _states(fc: Forecast) -> list[str]:
    return fc.states


def _short(key: str) -> str:
    """``ident-alice/send_message`` -> ``ident-alice message`` (the limits' short names)."""
    from engine.vocab import LIMIT_ALIASES

    short = {action: alias for alias, action in LIMIT_ALIASES.items()}
    ident, action = key.split("/", 1)
    return f"{ident} {short.get(action, action)}"


def render_forecast(fc: Forecast) -> None:
    out = render.console()
    days = busy_days(fc)
    series = fc.series
    head = ("day", *(_short(k) for k in series), "total", *(f"held: {b}" for b in _BACKLOG))
    rows = []
    for d in days:
        cells = []
        for key in series:
            ident, action = key.split("/", 1)
            n = d.actions.get(ident, {}).get(action, 0)
            limit = fc.limits.get(ident, {}).get(action)
            cells.append(f"{n}/{limit}" if limit is not None else str(n))
        rows.append((d.day.isoformat(), *cells, str(d.total),
                     *(str(d.backlog.get(b, 0)) for b in _BACKLOG)))
    render.print_table(out, head, rows, title="forecast: actions per day and identity "
                       "(done/limit per 24 h) and the leads held at the end of the day",
                       right=range(1, len(head)))
    states = _states(fc)
    rows = [(d.day.isoformat(), *(str(d.funnel.get(s, 0)) for s in states)) for d in days]
    render.print_table(out, ("day", *states), rows,
                       title="forecast: leads at each step and terminal at the end of the day",
                       right=range(1, len(states) + 1))
    render.render_lines(_summary(fc), out)


def render_week(fc: Forecast) -> None:
    """``plan --forecast``: the projected sends per day and identity of a quick simulation."""
    out = render.console()
    if fc.leads == 0:
        render.render_lines(["forecast: no Sequence (or no lead) here: nothing to project"], out)
        return
    series = fc.series
    rows = [(d.day.isoformat(), *(str(d.actions.get(k.split("/", 1)[0], {})
                                      .get(k.split("/", 1)[1], 0)) for k in series),
             str(d.total)) for d in fc.days[:7]]
    render.print_table(out, ("day", *(_short(k) for k in series), "total"), rows,
                       title="forecast: projected actions of the first week (a simulation on "
                             "the embedded sandbox's default world; `seqrun simulate` for more)",
                       right=range(1, len(series) + 2))
    render.render_lines([line for line in _summary(fc) if line.startswith("limit binds")], out)


def _summary(fc: Forecast) -> list[str]:
    lines = []
    for ident, per in sorted(fc.binds.items()):
        for action, day in sorted(per.items()):
            lines.append(f"limit binds: {ident} {action} "
                         f"{fc.limits.get(ident, {}).get(action, '?')}/24h from {day}")
    if not fc.binds:
        lines.append("limit binds: no limit held a lead back")
    if fc.finish is not None:
        lines.append(f"finish: every lead reached a terminal by {fc.finish} "
                     f"({(fc.finish - fc.start).days + 1} day(s) from {fc.start})")
    else:
        lines.append(f"finish: {fc.active} of {fc.leads} lead(s) still in the sequence at "
                     f"{fc.end}: play longer (--until) to see the end")
    return lines


# ---- --chart --------------------------------------------------------------------------------


def write_chart(fc: Forecast, path: Path) -> None:
    """Draw the forecast to ``path`` (.html or .png; see :func:`check_chart`)."""
    try:
        if path.suffix.lower() == ".png":
            _png(fc, path)
        else:
            path.write_text(chart_html(fc), encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--chart {path}: cannot write ({exc.strerror})") from exc


_W, _H, _PAD = 640, 180, 36
_COLORS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac")


def _svg_load(fc: Forecast, key: str, days: list[DayLoad]) -> str:
    """Daily count of one identity's action (bars) against its limit (dashed line)."""
    ident, action = key.split("/", 1)
    counts = [d.actions.get(ident, {}).get(action, 0) for d in days]
    limit = fc.limits.get(ident, {}).get(action)
    top = max([*counts, limit or 0, 1])
    step = (_W - 2 * _PAD) / max(len(days), 1)

    def y(v: float) -> float:
        return _H - _PAD - v * (_H - 2 * _PAD) / top

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
             f'role="img" data-series="{html.escape(key)}">',
             f'<title>{html.escape(key)}: actions per day against the limit</title>',
             f'<text x="{_PAD}" y="16" font-size="13">{html.escape(key)}'
             f'{f" (limit {limit}/24h)" if limit is not None else ""}</text>',
             f'<line x1="{_PAD}" y1="{y(0)}" x2="{_W - _PAD}" y2="{y(0)}" stroke="#999"/>']
    for i, (d, n) in enumerate(zip(days, counts, strict=True)):
        x = _PAD + i * step
        parts.append(f'<rect x="{x + 1:.1f}" y="{y(n):.1f}" width="{max(step - 2, 1):.1f}" '
                     f'height="{y(0) - y(n):.1f}" fill="#4e79a7"><title>{d.day}: {n}'
                     f'</title></rect>')
    if limit is not None:
        parts.append(f'<line x1="{_PAD}" y1="{y(limit):.1f}" x2="{_W - _PAD}" '
                     f'y2="{y(limit):.1f}" stroke="#e15759" stroke-dasharray="6 4"/>')
    parts.append(f'<text x="{_PAD}" y="{_H - 8}" font-size="11">{days[0].day}</text>'
                 f'<text x="{_W - _PAD}" y="{_H - 8}" font-size="11" text-anchor="end">'
                 f'{days[-1].day}</text><text x="4" y="{y(top) + 4:.1f}" font-size="11">'
                 f'{top}</text></svg>')
    return "".join(parts)


def _svg_funnel(fc: Forecast, days: list[DayLoad]) -> str:
    """Leads at each step and terminal at the end of each day, stacked."""
    states = _states(fc)
    total = max([sum(d.funnel.values()) for d in days] + [1])
    height = _H * 2
    step = (_W - 2 * _PAD) / max(len(days), 1)
    scale = (height - 2 * _PAD) / total
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W + 160}" height="{height}" '
             'role="img" data-series="funnel"><title>the funnel over time</title>',
             f'<text x="{_PAD}" y="16" font-size="13">leads at each step and terminal</text>']
    for i, d in enumerate(days):
        base = float(height - _PAD)
        for j, s in enumerate(states):
            h = d.funnel.get(s, 0) * scale
            if h:
                base -= h
                parts.append(f'<rect x="{_PAD + i * step + 1:.1f}" y="{base:.1f}" '
                             f'width="{max(step - 2, 1):.1f}" height="{h:.1f}" '
                             f'fill="{_COLORS[j % len(_COLORS)]}"><title>{d.day} '
                             f'{html.escape(s)}: {d.funnel[s]}</title></rect>')
    for j, s in enumerate(states):
        parts.append(f'<rect x="{_W + 10}" y="{30 + 18 * j}" width="12" height="12" '
                     f'fill="{_COLORS[j % len(_COLORS)]}"/><text x="{_W + 28}" '
                     f'y="{41 + 18 * j}" font-size="12">{html.escape(s)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def chart_html(fc: Forecast) -> str:
    """One self-contained page: a load chart per identity and action, then the funnel."""
    days = busy_days(fc)
    if not days:
        body = "<p>No action was simulated.</p>"
    else:
        body = "\n".join([*(_svg_load(fc, key, days) for key in fc.series),
                          _svg_funnel(fc, days)])
    notes = "".join(f"<li>{html.escape(line)}</li>" for line in _summary(fc))
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>seqrun forecast</title><style>body{font-family:sans-serif;margin:2em}"
            "svg{display:block;margin:1em 0}</style></head><body>"
            f"<h1>seqrun forecast {fc.start} to {fc.end}</h1><ul>{notes}</ul>\n{body}\n"
            "</body></html>\n")


def _png(fc: Forecast, path: Path) -> None:
    import matplotlib  # deferred: the optional extra seqrun[chart]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = busy_days(fc)
    series = fc.series
    fig, axes = plt.subplots(len(series) + 1, 1, figsize=(9, 2.2 * (len(series) + 1)),
                             squeeze=False)
    x = [d.day for d in days]
    for ax, key in zip(axes[:, 0], series, strict=False):
        ident, action = key.split("/", 1)
        ax.bar(x, [d.actions.get(ident, {}).get(action, 0) for d in days])
        limit = fc.limits.get(ident, {}).get(action)
        if limit is not None:
            ax.axhline(limit, color="#e15759", linestyle="--")
        ax.set_title(key, fontsize=9)
    ax = axes[-1, 0]
    states = _states(fc)
    ax.stackplot(x, [[d.funnel.get(s, 0) for d in days] for s in states], labels=states)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title("funnel", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
