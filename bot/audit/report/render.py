"""HTML for the moderator report: jinja2 with autoescaping on, matplotlib line charts embedded
as base64 PNG, so the page is one self-contained file that reads well on a phone.

Every value reaches the page through the template, escaped; the charts are images, so no user
text can become markup or script.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

from bot.audit.judge import CRITERIA_COLUMNS
from scoring.toxicity import ATTRIBUTES

CHART_SIZE_INCHES = (5.0, 3.0)  # drawn at ~550 px: legible when a phone scales it down
CHART_DPI = 110


def line_chart(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    ylabel: str,
    bands: Mapping[str, Sequence[float | None]] | None = None,
    ylim: tuple[float, float] | None = None,
) -> str:
    """A PNG line chart as a base64 string; `bands` draws ±spread around a series."""
    from matplotlib.figure import Figure  # no pyplot: no global state, safe in a thread

    fig = Figure(figsize=CHART_SIZE_INCHES, dpi=CHART_DPI, layout="constrained")
    ax = fig.add_subplot()
    x = list(range(len(labels)))
    for name, values in series.items():
        ys = [float("nan") if v is None else v for v in values]
        (line,) = ax.plot(x, ys, marker="o", markersize=3, linewidth=1.5, label=name)
        spread = (bands or {}).get(name)
        if spread is not None:
            lo = [y - (s or 0.0) for y, s in zip(ys, spread, strict=True)]
            hi = [y + (s or 0.0) for y, s in zip(ys, spread, strict=True)]
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.15, linewidth=0)
    step = max(1, len(labels) // 6)
    ax.set_xticks(x[::step], [labels[i] for i in x[::step]], fontsize=8, rotation=25)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.tick_params(axis="y", labelsize=8)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncols=3, loc="lower left", bbox_to_anchor=(0, 1.0), frameon=False)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _charts(data: dict[str, Any]) -> dict[str, str | None]:
    labels = data["period"]["labels"]
    events = data["events"]
    charts: dict[str, str | None] = {
        "messages": line_chart(labels, {"messages": data["activity"]["messages_series"]},
                               ylabel="messages"),
        "crisis": None, "guard": None, "tox_user": None, "tox_bot": None, "judge": None,
    }  # fmt: skip
    for key, kind in (("crisis", "crisis"), ("guard", "guard")):
        if events[kind]["total"]:
            charts[key] = line_chart(labels, events[kind]["series"], ylabel="events")
    for key, role in (("tox_user", "user"), ("tox_bot", "assistant")):
        block = data["toxicity"][role]
        if block["scored"]:
            charts[key] = line_chart(
                labels, {a: block["series"][a] for a in ATTRIBUTES},
                ylabel="mean score", ylim=(0.0, 1.0),
            )  # fmt: skip
    judge = data["judge"]
    if judge["judged"]:
        series = {c: [p["mean"] for p in judge["series"][c]] for c in CRITERIA_COLUMNS}
        bands = {c: [p["std"] for p in judge["series"][c]] for c in CRITERIA_COLUMNS}
        charts["judge"] = line_chart(
            labels, series, ylabel="score (0-5)", bands=bands, ylim=(0.0, 5.2)
        )
    return charts


def render_html(data: dict[str, Any]) -> str:
    """The whole page (autoescaped jinja2 template `bot/audit/report/templates/report.html`)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("bot.audit.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["num"] = _num
    template = env.get_template("report.html")
    return template.render(data=data, charts=_charts(data), attributes=ATTRIBUTES,
                           criteria=CRITERIA_COLUMNS)  # fmt: skip


def _num(value: Any, digits: int = 2) -> str:
    """A number for a table cell ("—" when missing)."""
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"
