"""The evaluation report: a folder with ``index.html``, its SVG charts and JPEG thumbnails.

Shared by the laptop and the report Lambda: ``render_report`` takes an ``Evaluation``
(fashion_pipeline.evaluation), a way to fetch a test image's bytes by its ``source-ref`` (or
None: the gallery then lists the boxes without pictures) and a folder, and returns the files
it wrote. The page is self-contained: inline CSS, no script, no network; charts
(``charts/*.svg``) and thumbnails (``thumbs/*.jpg``) sit next to it and are linked relatively,
so the folder can be copied to S3 or opened from disk as it is.

Labels are user data: every one is HTML-escaped in the page, and drawn in the charts with
matplotlib's math parsing off (a ``$`` in a label is a dollar sign, not TeX).

Outcomes in the gallery are told apart three ways, never by colour alone: colour (a
colour-blind-safe palette), line style (solid, dashed, dotted) and the caption's words.
"""

from __future__ import annotations

import html
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fashion_pipeline.evaluation import FN, FP, TN, TP, Annotation, Evaluation, ImageResult, Metrics, compare

THUMB_PIXELS = 360  # longest side of a gallery thumbnail
JPEG_QUALITY = 85
MAX_GALLERY_IMAGES = 60  # a report stays a page; images with mistakes come first
SVG_SALT = "fashion-pipeline-report"  # fixed ids in the SVG: the same evaluation renders the same bytes
COMPARE_PAGE = "compare.html"  # beside index.html, which links it when it is written


@dataclass(frozen=True)
class Style:
    name: str
    colour: tuple[int, int, int]
    line: str  # "solid", "dashed" or "dotted" (also the CSS border style in the legend)
    meaning: str


# Okabe-Ito colours: told apart with the common colour-vision deficiencies.
STYLES = {
    TP: Style("TP", (0, 158, 115), "solid", "true positive: predicted and present in the ground truth"),
    FP: Style("FP", (213, 94, 0), "dashed", "false positive: predicted, not in the ground truth"),
    "MISSED": Style("MISSED", (204, 121, 167), "dotted", "missed (false negative): in the ground truth, not found"),
}
METRIC_COLOURS = {"precision": "#0072B2", "recall": "#E69F00", "f1": "#009E73"}


# -- charts ------------------------------------------------------------------------------
# The margins are measured, not solved: each chart's tick labels, legend and axis label are
# measured once in the font they are drawn in, and the axes placed inside what they need.
# Matplotlib's constrained layout gets the same fit by laying the figure out repeatedly, which
# doubled the time of a chart (every training run renders these: tests/workflow measures it).
CHART_LABEL_CHARS = 60  # a longer label is cut in the charts (the tables show it whole)
_MEASURING_DPI = 72.0  # points are pixels: a measured width / 72 is inches
_PAD = 0.12  # inches between a label and the figure's edge


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")  # no display on Lambda or CI
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _svg(fig) -> bytes:
    import matplotlib

    buffer = io.BytesIO()
    # Text stays text (smaller, searchable); fixed ids and no date: the same chart, the same bytes.
    with matplotlib.rc_context({"svg.hashsalt": SVG_SALT, "svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()


def _literal(texts) -> None:
    for text in texts:
        text.set_parse_math(False)


def _short(name: str) -> str:
    return name if len(name) <= CHART_LABEL_CHARS else name[: CHART_LABEL_CHARS - 1] + "…"


def _inches(texts, size: str | float = "medium") -> tuple[float, float]:
    """Width of the widest of ``texts`` and the line height, in inches, in the charts' font at
    ``size`` (a matplotlib font size), as the SVG backend lays text out (math parsing off)."""
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    renderer, font = RendererAgg(1, 1, _MEASURING_DPI), FontProperties(size=size)
    widths = [renderer.get_text_width_height_descent(text, font, ismath=False)[0] for text in texts] or [0.0]
    line = renderer.get_text_width_height_descent("Ag", font, ismath=False)[1]
    return max(widths) / _MEASURING_DPI, line / _MEASURING_DPI


def _placed(plot: tuple[float, float], *, left: float, right: float, bottom: float, top: float):
    """A figure whose axes are ``plot`` (width, height, inches) with these margins around them."""
    width, height = plot[0] + left + right, plot[1] + bottom + top
    fig = _figure(width, height)
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height)
    return fig


def _legend_inches(entries: list[str], plot_width: float) -> float:
    """What a legend beside the axes needs: its widest entry, and in ems of its font the marker
    (2), the pad after it (0.8), the border pads (2 x 0.4) and the gap to the axes (0.5), with
    its anchor 1% of the axes' width to their right."""
    from matplotlib.font_manager import FontProperties

    em = FontProperties(size="small").get_size_in_points() / 72
    return _inches(entries, "small")[0] + 4.5 * em + 0.01 * plot_width + _PAD


_TITLE = 0.45  # title (large) and its pad above the axes
_TICKS = 0.14  # tick length and pad


def metrics_chart(evaluation: Evaluation) -> bytes:
    """Precision, recall and F1 per label (overall first) as bars, the threshold as a marker."""
    rows = [("(overall)", evaluation.overall)] + list(evaluation.labels.items())
    names = [_short(name) for name, _ in rows]
    widths = [_inches([name])[0] for name in names]
    line = _inches(["Ag"])[1]
    entries = ["Precision", "Recall", "F1", "Threshold"]
    plot = (max(4.0, 0.9 * len(rows)), 3.0)
    # Tick labels turn 30 degrees, anchored at their right end: down by sin, left by cos, from
    # tick i at (i + 0.6) / n of the axes' width (the x limits are set so below).
    left = max([0.8] + [0.87 * w - plot[0] * (i + 0.6) / len(rows) + _PAD for i, w in enumerate(widths)])
    fig = _placed(plot, left=left, right=_legend_inches(entries, plot[0]), bottom=0.5 * max(widths) + 0.87 * line + _TICKS + _PAD,
                  top=_TITLE)  # fmt: skip
    ax = fig.add_subplot()
    ax.set_xlim(-0.6, len(rows) - 0.4)
    width = 0.25
    for offset, metric in enumerate(("precision", "recall", "f1")):
        values = [getattr(m, metric) or 0.0 for _, m in rows]
        ax.bar([i + (offset - 1) * width for i in range(len(rows))], values, width, label=entries[offset],
               color=METRIC_COLOURS[metric], hatch=("", "//", "..")[offset], edgecolor="white")
    thresholds = [(i, m.threshold) for i, (_, m) in enumerate(rows) if m.threshold is not None]
    if thresholds:
        ax.scatter([i for i, _ in thresholds], [t for _, t in thresholds], marker="D", color="black", zorder=3, label="Threshold")
    ax.set_xticks(range(len(rows)), labels=names, rotation=30, ha="right")
    _literal(ax.get_xticklabels())
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score (0-1)")
    ax.set_title("Precision, recall, F1 and threshold")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")  # beside the bars, never over them
    return _svg(fig)


def _bars_figure(names: list[str], *, legend: list[str], xlabel: str):
    """A figure for horizontal bars, one row per name, the names on the left."""
    label, line = _inches(names)
    plot = (5.0, max(1.0, 0.35 * len(names)))
    right = _legend_inches(legend, plot[0]) if legend else _PAD + 0.2
    axis_label = _inches([xlabel])[0]
    left = label + _TICKS + _PAD
    # The axis label is centred under the axes: widen them until it fits on both sides.
    plot = (max(plot[0], axis_label + 2 * _PAD - 2 * min(left, right)), plot[1])
    return _placed(plot, left=left, right=right, bottom=2 * line + _TICKS + 2 * _PAD, top=_TITLE)


def distribution_chart(evaluation: Evaluation) -> bytes:
    """Boxes per label in the train and the test set, side by side."""
    train, test = evaluation.distribution.get("train", {}), evaluation.distribution.get("test", {})
    names = sorted(set(train) | set(test), key=lambda n: (-(train.get(n, 0) + test.get(n, 0)), n))
    fig = _bars_figure([_short(n) for n in names], legend=["train", "test"], xlabel="labelled boxes")
    ax = fig.add_subplot()
    height = 0.4
    positions = range(len(names))
    ax.barh([p - height / 2 for p in positions], [train.get(n, 0) for n in names], height, label="train", color="#0072B2")
    ax.barh([p + height / 2 for p in positions], [test.get(n, 0) for n in names], height, label="test", color="#E69F00", hatch="//")
    ax.set_yticks(list(positions), labels=[_short(n) for n in names])
    _literal(ax.get_yticklabels())
    ax.invert_yaxis()
    ax.set_xlabel("labelled boxes")
    ax.set_title("Label distribution: train vs test")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    return _svg(fig)


def comparison_chart(before: Evaluation, after: Evaluation) -> bytes:
    """The change of F1 per label (overall first), from ``before`` to ``after``."""
    changes = [d for d in compare(before, after) if d.metric == "f1"]
    names = [_short("(overall)" if d.label is None else d.label) for d in changes]
    values = [d.change or 0.0 for d in changes]
    xlabel = f"F1 change ({_short(after.version)} minus {_short(before.version)})"
    fig = _bars_figure(names, legend=[], xlabel=xlabel)
    ax = fig.add_subplot()
    colours = ["#009E73" if v >= 0 else "#D55E00" for v in values]
    ax.barh(range(len(names)), values, color=colours, hatch=["" if v >= 0 else "//" for v in values])
    ax.set_yticks(range(len(names)), labels=names)
    _literal(ax.get_yticklabels())
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(xlabel)
    _literal([ax.xaxis.label])
    ax.set_title("F1 per label: change")
    return _svg(fig)


# -- gallery -----------------------------------------------------------------------------
def _drawn(image: ImageResult) -> list[tuple[Annotation, Style, str]]:
    """What the gallery draws on an image: predictions classed positive and missed truths."""
    marks = []
    for p in image.predictions:
        if p.outcome in (TP, FP) and p.box is not None:
            marks.append((p, STYLES[p.outcome], f"{p.outcome} {p.label} {int((p.confidence or 0) * 100)}%"))
    for t in image.truths:
        if t.outcome == FN and t.box is not None:
            marks.append((t, STYLES["MISSED"], f"MISSED {t.label}"))
    return marks


def _line(draw, a: tuple[float, float], b: tuple[float, float], colour, width: int, style: str) -> None:
    if style == "solid":
        draw.line([a, b], fill=colour, width=width)
        return
    dash, gap = (10, 6) if style == "dashed" else (3, 4)
    length = max(abs(b[0] - a[0]), abs(b[1] - a[1]))
    step = 0.0
    while step < length:
        end = min(step + dash, length)
        t0, t1 = step / length, end / length
        draw.line([(a[0] + (b[0] - a[0]) * t0, a[1] + (b[1] - a[1]) * t0),
                   (a[0] + (b[0] - a[0]) * t1, a[1] + (b[1] - a[1]) * t1)], fill=colour, width=width)
        step = end + gap


def thumbnail(data: bytes, image: ImageResult) -> bytes:
    """A JPEG thumbnail of the image with ``_drawn`` marks; raises OSError when Pillow cannot read it."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        opened = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:  # not an OSError: too many pixels to decode safely
        raise OSError(str(exc)) from None
    with opened:
        # A JPEG is decoded at the smallest 1/2, 1/4 or 1/8 scale still at least the thumbnail's
        # size: a 4,096 px photo then costs a fraction of a full decode in time and memory.
        opened.draft("RGB", (THUMB_PIXELS, THUMB_PIXELS))
        picture = opened.convert("RGB")
    width, height = image.width or picture.width, image.height or picture.height
    picture.thumbnail((THUMB_PIXELS, THUMB_PIXELS))
    sx, sy = picture.width / width, picture.height / height
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=12)  # Pillow's bundled FreeType font: no font file needed on Lambda
    for annotation, style, caption in _drawn(image):
        box = annotation.box
        x0, y0, x1, y1 = box.left * sx, box.top * sy, (box.left + box.width) * sx, (box.top + box.height) * sy
        for a, b in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)), ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))):
            _line(draw, a, b, style.colour, 3, style.line)
        left, top, right, bottom = draw.textbbox((0, 0), caption, font=font)
        ty = y0 - (bottom - top) - 4 if y0 - (bottom - top) - 4 >= 0 else y0 + 2
        draw.rectangle([x0, ty, x0 + right - left + 4, ty + bottom - top + 4], fill=style.colour)
        draw.text((x0 + 2, ty + 2 - top), caption, fill=(0, 0, 0), font=font)
    out = io.BytesIO()
    picture.save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def _mistakes(image: ImageResult) -> int:
    return sum(p.outcome == FP for p in image.predictions) + sum(t.outcome == FN for t in image.truths)


# -- page --------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#111;max-width:80rem}
table{border-collapse:collapse;margin:.5rem 0 1rem}th,td{border:1px solid #bbb;padding:.25rem .5rem;text-align:right}
th:first-child,td:first-child{text-align:left}img.chart{max-width:100%;height:auto}
.legend span{display:inline-block;width:1.6rem;height:.9rem;border-width:3px;margin:0 .4rem 0 1rem;vertical-align:middle}
.gallery{display:flex;flex-wrap:wrap;gap:1rem}.gallery figure{margin:0;width:23rem;border:1px solid #ccc;padding:.5rem}
.gallery figcaption{font-size:.85rem;word-break:break-all}.gallery ul{padding-left:1.1rem;margin:.3rem 0}
.note{background:#fff6d6;padding:.4rem .6rem}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _metrics_row(name: str, m: Metrics) -> str:
    threshold = _fmt(m.threshold) + (f" ({_e(m.threshold_source)})" if m.threshold_source else "")
    return (f"<tr><td>{_e(name)}</td><td>{_fmt(m.precision)}</td><td>{_fmt(m.recall)}</td><td>{_fmt(m.f1)}</td>"
            f"<td>{threshold}</td><td>{m.tp}</td><td>{m.fp}</td><td>{m.fn}</td>"
            f"<td>{'' if m.testing_images is None else m.testing_images}</td><td>{_e(m.source)}</td></tr>")


def _legend() -> str:
    items = "".join(
        f'<span style="border-style:{s.line};border-color:rgb{s.colour}"></span><b>{s.name}</b> {_e(s.meaning)}'
        for s in STYLES.values()
    )
    return f'<p class="legend">{items}</p>'


def _annotation_item(a: Annotation, kind: str) -> str:
    words = {TP: "TP", FP: "FP", FN: "FN (below threshold)" if kind == "prediction" else "MISSED", TN: "TN (below threshold)"}
    box = "" if a.box is None else f" at ({a.box.left:.0f}, {a.box.top:.0f}, {a.box.width:.0f}×{a.box.height:.0f})"
    confidence = "" if a.confidence is None else f" {a.confidence * 100:.1f}%"
    found = " (found)" if kind == "truth" and a.outcome == TP else ""
    word = words[a.outcome] if kind == "prediction" or a.outcome != TP else "ground truth"
    return f"<li><b>{_e(word)}</b> {kind}: {_e(a.label)}{confidence}{box}{found}</li>"


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{_CSS}</style></head>'
            f"<body>{body}</body></html>\n")


def render_report(
    evaluation: Evaluation,
    images: Callable[[str], bytes] | None,
    out_dir: str | Path,
    *,
    max_images: int = MAX_GALLERY_IMAGES,
    compared_with: str | None = None,
) -> list[Path]:
    """Write the report of ``evaluation`` into ``out_dir``; the files written, index.html first.

    ``images(source_ref)`` returns an image's bytes (LookupError or OSError: not available,
    the gallery says so); None draws no thumbnails. ``compared_with`` names the version that
    ``compare.html`` (``render_comparison``, written beside it) compares with: the page links it."""
    out = Path(out_dir)
    (out / "charts").mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def put(relative: str, data: bytes) -> str:
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)
        return relative

    metrics_svg = put("charts/metrics.svg", metrics_chart(evaluation))
    distribution_svg = put("charts/distribution.svg", distribution_chart(evaluation))
    gallery = []
    # Deterministic: the most mistakes first, then by image, so a re-run shows the same images.
    shown = sorted(evaluation.images, key=lambda i: (-_mistakes(i), i.source_ref))[:max_images]
    for index, image in enumerate(shown):
        picture = "<p>(no image source given)</p>" if images is None else ""
        if images is not None:
            try:
                thumb = put(f"thumbs/{index:04d}.jpg", thumbnail(images(image.source_ref), image))
                picture = f'<img src="{_e(thumb)}" alt="{_e(image.source_ref)} with its boxes">'
            except (LookupError, OSError) as exc:
                picture = f"<p>Image not available: {_e(exc)}</p>"
        items = "".join(_annotation_item(p, "prediction") for p in image.predictions)
        items += "".join(_annotation_item(t, "truth") for t in image.truths)
        gallery.append(f"<figure>{picture}<figcaption>{_e(image.source_ref)}<ul>{items}</ul></figcaption></figure>")
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in evaluation.notes)
    header = "<tr><th>label</th><th>precision</th><th>recall</th><th>F1</th><th>threshold</th><th>TP</th><th>FP</th><th>FN</th><th>test images</th><th>source</th></tr>"
    rows = _metrics_row("(overall)", evaluation.overall) + "".join(_metrics_row(n, m) for n, m in evaluation.labels.items())
    train, test = evaluation.distribution.get("train", {}), evaluation.distribution.get("test", {})
    distribution_rows = "".join(
        f"<tr><td>{_e(n)}</td><td>{train.get(n, 0)}</td><td>{test.get(n, 0)}</td></tr>" for n in sorted(set(train) | set(test))
    )
    omitted = len(evaluation.images) - len(shown)
    body = (
        f"<h1>Evaluation of {_e(evaluation.version)}</h1>{notes}"
        + (f'<p><a href="{COMPARE_PAGE}">Compared with {_e(compared_with)}</a>: per-label differences.</p>' if compared_with else "")
        + f'<h2 id="metrics">Metrics</h2><img class="chart" src="{metrics_svg}" alt="Precision, recall, F1 and threshold per label">'
        f"<table>{header}{rows}</table>"
        f'<h2 id="distribution">Label distribution</h2><img class="chart" src="{distribution_svg}" alt="Boxes per label, train and test">'
        f"<table><tr><th>label</th><th>train boxes</th><th>test boxes</th></tr>{distribution_rows}</table>"
        f'<h2 id="gallery">Test images</h2>{_legend()}'
        + (f"<p>{len(shown)} of {len(evaluation.images)} images shown, those with mistakes first ({omitted} omitted).</p>" if omitted else "")
        + f'<div class="gallery">{"".join(gallery)}</div>'
    )
    index = out / "index.html"
    index.write_text(_page(f"Evaluation of {evaluation.version}", body), encoding="utf-8")
    return [index, *written]


def render_comparison(before: Evaluation, after: Evaluation, out_dir: str | Path) -> list[Path]:
    """``compare.html`` and its chart: per label, each metric of ``before``, ``after`` and the change."""
    out = Path(out_dir)
    (out / "charts").mkdir(parents=True, exist_ok=True)
    chart = out / "charts" / "compare.svg"
    chart.write_bytes(comparison_chart(before, after))
    rows = "".join(
        f"<tr><td>{_e('(overall)' if d.label is None else d.label)}</td><td>{_e(d.metric)}</td><td>{_fmt(d.before)}</td>"
        f"<td>{_fmt(d.after)}</td><td>{'–' if d.change is None else f'{d.change:+.3f}'}</td></tr>"
        for d in compare(before, after)
    )
    body = (
        f"<h1>{_e(after.version)} compared with {_e(before.version)}</h1>"
        f'<p><a href="index.html">Back to the evaluation of {_e(after.version)}</a></p>'
        f'<img class="chart" src="charts/compare.svg" alt="F1 change per label">'
        f"<table><tr><th>label</th><th>metric</th><th>{_e(before.version)}</th><th>{_e(after.version)}</th><th>change</th></tr>{rows}</table>"
    )
    page = out / COMPARE_PAGE
    page.write_text(_page(f"{after.version} vs {before.version}", body), encoding="utf-8")
    return [page, chart]
