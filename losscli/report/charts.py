"""The report's charts: Matplotlib figures (its object API, no pyplot) written as SVG text to
be embedded in the page. Text stays text (``svg.fonttype`` none: small, searchable, in the
page's font); each chart's ids come from its own fixed salt, so output is deterministic and
charts in one page never share an id. Matplotlib is imported only for a report, by the
renderer's process (``losscli.report.worker``) while the run computes.

Labels from data (class names, group values) are passed through ``label``: control
characters escaped, a ``$`` kept literal (not Matplotlib's math), long names cut. Matplotlib
writes text into the SVG XML-escaped.
"""

from __future__ import annotations

import math
import re
import threading

from losscli.errors import OptionError

INSTALL = "pip install 'losscli[report]'"
# Matplotlib is not thread-safe (a batch runs jobs in threads): one chart at a time.
_LOCK = threading.Lock()

# One colour for data, one for marks (quantiles, the diagonal): both read in light mode and,
# through the page's inverting filter, in dark mode.
INK = "#1f2933"
BAR = "#3d7fd9"
MARK = "#d9480f"
SECOND = "#2f9e44"
GRID = "#d5dbe3"
WIDTH = 5.0  # inches: 360 pt, about a phone's width at 1:1
LABEL_CHARS = 24
MAX_BARS = 40


def require() -> None:
    """Refuse --report (OptionError, exit 2) where Matplotlib is not installed, saying what to
    install."""
    import importlib.util

    try:
        found = importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise OptionError(f"--report needs Matplotlib, which is not installed: {INSTALL}")


def warm() -> None:
    """Import Matplotlib and draw a small chart of each kind, thrown away: what a first chart
    sets up (fonts, markers, tickers and their caches), done while the run computes."""
    histogram([0.05, 1.0, 20.0], [1, 2], {"p50": 0.5, "p90": 2.0, "p99": 9.0, "max": 20.0})
    bars(["a", "b"], [1.0, None], [1, 0], "class", "sketch")
    bin_ = {"lower": 0.5, "upper": 1.0, "count": 1, "confidence": 0.7, "accuracy": 1.0}
    reliability([("a", [{**bin_, "lower": 0.0, "upper": 0.5}, bin_])])


_DEFAULTS: list = []


def _matplotlib():
    """(matplotlib, Figure, FigureCanvasSVG); OptionError where the import fails (a broken
    installation, or a backend named by MPLBACKEND that Matplotlib refuses). The first call
    puts Matplotlib's own defaults back: a matplotlibrc of the user's (text.usetex, another
    svg.fonttype) does not reach the report, which is drawn the same everywhere."""
    try:
        import matplotlib
        from matplotlib.backends.backend_svg import FigureCanvasSVG
        from matplotlib.figure import Figure
    except Exception as error:  # noqa: BLE001 (any failure of a third-party import)
        raise OptionError(
            f"--report cannot import Matplotlib ({type(error).__name__}: {error}): {INSTALL}"
        ) from None
    if not _DEFAULTS:
        matplotlib.rcdefaults()
        _DEFAULTS.append(True)
    return matplotlib, Figure, FigureCanvasSVG


def _style(salt: str) -> dict:
    return {
        "svg.fonttype": "none",
        "svg.hashsalt": f"losscli-{salt}",
        "font.family": "sans-serif",
        "font.sans-serif": ["DejaVu Sans"],
        "font.size": 12,
        "axes.titlesize": 13,
        "axes.labelsize": 12,
        "axes.edgecolor": "#8a94a3",
        "axes.labelcolor": INK,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "axes.axisbelow": True,
        "grid.color": GRID,
        "grid.linewidth": 0.6,
        "xtick.color": INK,
        "ytick.color": INK,
        "text.color": INK,
        "legend.frameon": False,
        "legend.fontsize": 11,
        "figure.facecolor": "none",
        "axes.facecolor": "none",
        "savefig.facecolor": "none",
        "savefig.edgecolor": "none",
    }


_PROLOGUE = re.compile(r"\A.*?(?=<svg[\s>])", re.S)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)
_SIZE = re.compile(r'\s(?:width|height)="[^"]*"')
_FONT = re.compile(r"font-family:[^;\"]*")
# Matplotlib's names of its groups (figure_1, axes_1, text_3), which nothing refers to.
_GROUP_ID = re.compile(r'\sid="[A-Za-z0-9.]+_[0-9]+"')
_REFERENCE = re.compile(r'(\sid="|href="#|url\(#)')


def _draw(salt: str, height: float, build, title: str, margins=(0.75, 0.6, 0.2, 0.15)) -> str:
    """The SVG text of a figure ``WIDTH`` x ``height`` inches that ``build(figure)`` fills,
    ready to embed: no XML prologue or metadata, sized by its viewBox, text in the page's
    font, described by ``title`` for screen readers. ``margins``: left, bottom, right and
    top, in inches (set, not computed by a layout engine: a report draws in a fraction of
    the time)."""
    import html
    import io

    from losscli.output import escape

    with _LOCK:
        matplotlib, Figure, FigureCanvasSVG = _matplotlib()
        with matplotlib.rc_context(_style(salt)):
            figure = Figure(figsize=(WIDTH, height))
            left, bottom, right, top = margins
            figure.subplots_adjust(
                left=left / WIDTH, bottom=bottom / height, right=1 - right / WIDTH,
                top=1 - top / height, wspace=0.35, hspace=0.12,
            )  # fmt: skip
            build(figure)
            out = io.StringIO()
            FigureCanvasSVG(figure).print_svg(out, metadata={"Date": None})
    svg = _METADATA.sub("", _PROLOGUE.sub("", out.getvalue(), count=1), count=1)
    head, rest = svg.split(">", 1)
    described = html.escape(escape(title), quote=True)
    head = _SIZE.sub("", head) + f' role="img" aria-label="{described}"'
    svg = _GROUP_ID.sub("", _FONT.sub("font-family: inherit", f"{head}>{rest}"))
    # The ids left (clip paths, markers) are unique in the page: prefixed by the salt.
    return _REFERENCE.sub(lambda m: f"{m.group(1)}{salt}-", svg)


def label(text) -> str:
    """A data label as a chart shows it: control characters escaped, ``$`` literal (not
    Matplotlib's math), at most LABEL_CHARS characters."""
    from losscli.output import escape

    text = escape(str(text)) if str(text) != "" else "(empty)"
    if len(text) > LABEL_CHARS:
        text = text[: LABEL_CHARS - 1] + "\u2026"
    return text.replace("$", r"\$")


def _short(value: float) -> str:
    return f"{value:.3g}"


def _plain_ticks(axis, ratio: float) -> None:
    """Ticks of a logarithmic axis spanning ``ratio``: 1, 2 and 5 of each decade over two
    decades or less, else decades."""
    from matplotlib.ticker import LogLocator

    subs = (1.0, 2.0, 5.0) if ratio <= 100 else (1.0,)
    axis.set_major_locator(LogLocator(base=10, subs=subs, numticks=7))


def _label_width(names: list[str]) -> float:
    """Inches left of the axes for tick labels ``names`` (12 pt, generous per character)."""
    return 0.3 + max((len(n) for n in names), default=1) * 12 * 0.6 / 72


def _finite(values) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def histogram(edges: list[float], counts: list[int], quantiles: dict[str, float]) -> str:
    """The per-row loss histogram (bins between ``edges``, logarithmic where every edge is
    positive) with the quantiles marked."""

    def build(figure) -> None:
        from matplotlib.ticker import FuncFormatter, MaxNLocator, NullLocator

        ax = figure.add_subplot()
        if len(edges) > 1 and edges[-1] > edges[0]:
            ax.stairs(counts, edges, fill=True, color=BAR, alpha=0.85, linewidth=0)
            ax.stairs(counts, edges, color=BAR, linewidth=1.2)
        elif edges:  # every row has the same loss: one bar there
            width = abs(edges[0]) / 10 or 1.0
            ax.bar([edges[0]], [sum(counts)], width=width, color=BAR, alpha=0.85)
            ax.set_xlim(edges[0] - 4 * width, edges[0] + 4 * width)
        if len(edges) > 1 and 0 < edges[0] < edges[-1]:
            ax.set_xscale("log")
        elif len(edges) > 1 and edges[0] <= 0 < edges[-1]:
            positive = [e for e in edges if e > 0]
            ax.set_xscale("symlog", linthresh=positive[0])
        top = max(counts, default=0) or 1
        ax.set_ylim(0, top * 1.35)
        styles = {"p50": ":", "p90": "--", "p99": "-.", "max": "-"}
        for name, value in quantiles.items():
            if value is not None and math.isfinite(value):
                ax.axvline(value, color=MARK, linestyle=styles.get(name, "-"), linewidth=1.4,
                           label=f"{name} {_short(value)}")  # fmt: skip
        ax.legend(loc="upper left", ncols=2, fontsize=10, handlelength=1.8)
        ax.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
        scale = ax.get_xscale()
        if scale == "log":
            _plain_ticks(ax.xaxis, edges[-1] / edges[0])
        if scale != "linear":
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # not 10^k
            ax.xaxis.set_minor_locator(NullLocator())  # a tick per value: slow, and unread
        named = {"log": " (log scale)", "symlog": " (symmetric log scale)"}
        ax.set_xlabel("per-row loss" + named.get(scale, ""))
        ax.set_ylabel("rows")
        ax.grid(axis="x", visible=False)

    title = "Histogram of the per-row loss with p50, p90, p99, max"
    return _draw("hist", 3.0, build, title, (0.75, 0.6, 0.2, 0.1))


def bars(labels: list, means: list, counts: list[int], what: str, salt: str) -> str:
    """Horizontal bars of the mean loss of each class or group, its row count beside it
    (at most MAX_BARS: the caller chooses them); ``salt`` tells its ids from other charts'."""
    names = [label(v) for v in labels]
    values = [m if m is not None and math.isfinite(m) else 0.0 for m in means]
    high = max(_finite(means), default=0.0) or 1.0

    def build(figure) -> None:
        from matplotlib.ticker import MaxNLocator

        ax = figure.add_subplot()
        positions = list(range(len(names)))
        ax.barh(positions, values, color=BAR, height=0.7)
        ax.set_yticks(positions, names)
        ax.invert_yaxis()
        for y, mean, count in zip(positions, means, counts):
            text = f"n={count}" if mean is not None else f"n={count}, no mean"
            ax.annotate(
                text, (max(values[y], 0.0), y), xytext=(4, 0), textcoords="offset points",
                va="center", ha="left", fontsize=10, color="#52606d",
            )  # fmt: skip
        ax.set_xlim(min(0.0, min(values, default=0.0)), high * 1.22)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
        ax.set_xlabel(f"mean loss per {label(what)}")
        ax.grid(axis="y", visible=False)

    height = 0.85 + 0.3 * max(len(names), 2)
    margins = (_label_width(names), 0.6, 0.15, 0.1)
    return _draw(salt, height, build, f"Mean loss per {what}, with row counts", margins)


def reliability(series: list[tuple[str, list[dict]]]) -> str:
    """A reliability diagram: accuracy against mean confidence per bin (one line per series,
    such as a and b of a comparison), the diagonal, and the counts per bin below."""
    colours = [BAR, SECOND]

    def build(figure) -> None:
        from matplotlib.ticker import MaxNLocator

        top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        top.plot([0, 1], [0, 1], color=MARK, linestyle="--", linewidth=1.2, label="perfect")
        width = 1.0 / max(len(series[0][1]), 1)
        for i, (name, bins) in enumerate(series):
            colour = colours[i % len(colours)]
            full = [b for b in bins if b["count"]]
            if len(series) == 1:
                top.bar(
                    [b["lower"] for b in full], [b["accuracy"] for b in full],
                    width=[b["upper"] - b["lower"] for b in full], align="edge",
                    color=colour, alpha=0.35, edgecolor=colour, linewidth=0.8,
                )  # fmt: skip
            top.plot(
                [b["confidence"] for b in full], [b["accuracy"] for b in full], marker="o",
                markersize=4, color=colour, linewidth=1.5, label=name,
            )  # fmt: skip
            offset = (i - (len(series) - 1) / 2) * width / len(series)
            bottom.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=3))
            bottom.bar(
                [(b["lower"] + b["upper"]) / 2 + offset for b in bins],
                [b["count"] for b in bins], width=width / len(series) * 0.9,
                color=colour, alpha=0.8,
            )  # fmt: skip
        top.set_xlim(0, 1)
        top.set_xticks([0, 0.25, 0.5, 0.75, 1])
        top.set_yticks([0, 0.25, 0.5, 0.75, 1])
        top.set_ylim(0, 1.02)
        top.set_ylabel("accuracy")
        top.legend(loc="upper left")
        bottom.set_xlabel("confidence")
        bottom.set_ylabel("count")
        bottom.grid(axis="x", visible=False)

    title = "Reliability diagram: accuracy against confidence"
    return _draw("reliability", 4.4, build, title, (0.75, 0.6, 0.2, 0.1))


def difference(a: float, b: float, value: float, ci95: list | None) -> str:
    """Both values side by side, and the paired difference b - a with its 95% interval
    against zero."""

    def build(figure) -> None:
        left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.6]})
        left.bar(["a", "b"], [a, b], color=[BAR, SECOND], width=0.6)
        left.set_ylabel("loss")
        left.grid(axis="x", visible=False)
        right.axvline(0.0, color="#8a94a3", linewidth=1)
        if ci95 is not None and None not in ci95:
            right.errorbar(
                [value], [0], xerr=[[value - ci95[0]], [ci95[1] - value]], fmt="o",
                color=MARK, capsize=6, linewidth=2, markersize=7,
            )  # fmt: skip
            span = max(abs(ci95[0]), abs(ci95[1]), 1e-300)
        else:
            right.plot([value], [0], "o", color=MARK, markersize=7)
            span = abs(value) or 1.0
        right.set_xlim(-1.25 * span, 1.25 * span)
        right.set_yticks([])
        right.set_xlabel("b - a (95% interval)")
        right.grid(axis="y", visible=False)

    title = "Losses of a and b, and b - a with its 95% interval"
    return _draw("difference", 2.4, build, title, (0.7, 0.6, 0.2, 0.1))


def class_differences(labels: list, differences: list) -> str:
    """Horizontal bars of b - a per class (lower: b better), centred on zero."""
    names = [label(v) for v in labels]
    values = [d if d is not None and math.isfinite(d) else 0.0 for d in differences]

    def build(figure) -> None:
        ax = figure.add_subplot()
        positions = list(range(len(names)))
        ax.barh(positions, values, color=[SECOND if v < 0 else MARK for v in values], height=0.7)
        ax.axvline(0.0, color="#8a94a3", linewidth=1)
        ax.set_yticks(positions, names)
        ax.invert_yaxis()
        span = max((abs(v) for v in values), default=0.0) or 1.0
        ax.set_xlim(-1.1 * span, 1.1 * span)
        ax.set_xlabel("mean loss b - a per class (below 0: b is better)")
        ax.grid(axis="y", visible=False)

    height = 0.85 + 0.3 * max(len(names), 2)
    margins = (_label_width(names), 0.6, 0.2, 0.1)
    title = "Per-class difference of mean loss, b - a"
    return _draw("class-differences", height, build, title, margins)
