"""The report folder: index.html, its charts and the gallery, escaped and self-contained."""

from __future__ import annotations

import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from fashion_pipeline.evaluation import FP, TP, build_evaluation
from evaluation_report.render import STYLES, render_comparison, render_report, thumbnail
from tests.fashion_pipeline.test_evaluation import SNAPSHOT, snapshot_line


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.links += [value for name, value in attrs if name in ("src", "href") and value]


def jpeg(size=(1024, 768), colour=(200, 200, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="JPEG")
    return out.getvalue()


@pytest.fixture
def evaluation():
    return build_evaluation("v1", snapshot=SNAPSHOT, train_manifest=[])


def test_report_writes_a_self_contained_page_with_charts_and_gallery(tmp_path, evaluation):
    files = render_report(evaluation, lambda ref: jpeg(), tmp_path)
    index = tmp_path / "index.html"
    assert files[0] == index
    assert {f.relative_to(tmp_path).as_posix() for f in files} == {
        "index.html", "charts/metrics.svg", "charts/distribution.svg", "thumbs/0000.jpg", "thumbs/0001.jpg", "thumbs/0002.jpg",
    }
    page = index.read_text(encoding="utf-8")
    parser = Links()
    parser.feed(page)
    assert parser.links, "the page links its charts and thumbnails"
    for link in parser.links:  # relative, and every one exists: no CDN, no network
        assert not re.match(r"^[a-z]+:|^/", link), link
        assert (tmp_path / link).is_file(), link
    assert "script" not in parser.tags and "<style>" in page
    for svg in ("metrics", "distribution"):
        text = (tmp_path / "charts" / f"{svg}.svg").read_text()
        assert text.lstrip().startswith("<?xml") and "<svg" in text
        assert "Cap" in text and "Watch" in text  # labels drawn as text
    # Every outcome is in the legend in words, not only in colour.
    for style in STYLES.values():
        assert f"<b>{style.name}</b>" in page and style.line in page
    assert "<b>MISSED</b> truth: Cap" in page and "<b>FP</b> prediction: Watch 80.0%" in page
    assert "TN (below threshold)" in page and "FN (below threshold)" in page
    with Image.open(tmp_path / "thumbs" / "0000.jpg") as thumb:
        assert thumb.format == "JPEG" and max(thumb.size) == 360


def test_thumbnail_draws_each_outcome_in_its_colour(evaluation):
    one = evaluation.images[0]  # Cap TP at (712, 409), Watch FP at (300, 300), Cap missed at (100, 100)
    with Image.open(io.BytesIO(thumbnail(jpeg(colour=(255, 255, 255)), one))) as picture:
        scale = picture.width / 1024

        def near(colour, x, y):
            for dx in range(-3, 4):
                for dy in range(-3, 4):
                    pixel = picture.getpixel((int(x * scale) + dx, int(y * scale) + dy))
                    if all(abs(a - b) < 60 for a, b in zip(pixel, colour)):
                        return True
            return False

        # The left edges, halfway down each box (dashes and dots leave gaps: try a few rows).
        assert near(STYLES[TP].colour, 712, 409 + 40)
        assert any(near(STYLES[FP].colour, 300, 300 + dy) for dy in range(3, 18, 3))
        assert any(near(STYLES["MISSED"].colour, 100, 100 + dy) for dy in range(10, 45, 3))


def test_labels_and_keys_are_escaped(tmp_path):
    nasty = '<script>alert("x")</script> & $\\frac{1}{2}$'
    line = json.loads(snapshot_line("evil", [("Cap", (10, 10, 50, 50))], [("Cap", (10, 10, 50, 50), 0.9, TP)]))
    for key in ("rekognition-custom-labels-training-0-metadata", "rekognition-custom-labels-evaluation-metadata"):
        line[key]["class-map"]["0"] = nasty
    line["source-ref"] = 's3://b/"><img src=x onerror=alert(1)>.jpg'
    evaluation = build_evaluation('v<1>"', snapshot=[json.dumps(line)])
    render_report(evaluation, None, tmp_path)
    page = (tmp_path / "index.html").read_text()
    assert "<script>" not in page and "<img src=x" not in page and 'v<1>"' not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; $\\frac{1}{2}$" in page
    chart = (tmp_path / "charts" / "metrics.svg").read_text()
    assert "&lt;script&gt;" in chart and "<script>" not in chart
    assert "\\frac{1}{2}" in chart  # drawn literally, not as TeX


def test_gallery_without_images_and_with_an_unavailable_one(tmp_path, evaluation):
    files = render_report(evaluation, None, tmp_path / "none")
    assert not any("thumbs" in f.as_posix() for f in files)
    assert "(no image source given)" in (tmp_path / "none" / "index.html").read_text()

    def images(ref: str) -> bytes:
        if ref.endswith("two.jpeg"):
            raise LookupError(f"{ref} is not in the bucket")
        return b"not an image" if ref.endswith("three.jpeg") else jpeg()

    render_report(evaluation, images, tmp_path / "some")
    page = (tmp_path / "some" / "index.html").read_text()
    assert "Image not available: s3://test-bucket/dataset/two.jpeg is not in the bucket" in page
    assert page.count("Image not available") == 2  # the undecodable one too


def test_mistakes_first_and_the_cap_is_said(tmp_path, evaluation):
    render_report(evaluation, None, tmp_path, max_images=1)
    page = (tmp_path / "index.html").read_text()
    assert "1 of 3 images shown" in page and "one.jpeg" in page and "two.jpeg" not in page


def test_same_evaluation_same_bytes(tmp_path, evaluation):
    render_report(evaluation, None, tmp_path / "a")
    render_report(evaluation, None, tmp_path / "b")
    for name in ("index.html", "charts/metrics.svg", "charts/distribution.svg"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_comparison_page(tmp_path):
    before = build_evaluation("v1", snapshot=SNAPSHOT)
    after = build_evaluation("v<2>", snapshot=SNAPSHOT[:2])
    page, chart = render_comparison(before, after, tmp_path)
    assert page == tmp_path / "compare.html" and chart == tmp_path / "charts" / "compare.svg"
    text = page.read_text()
    assert "v&lt;2&gt; compared with v1" in text
    assert "<tr><td>Cap</td><td>recall</td><td>0.333</td><td>0.500</td><td>+0.167</td></tr>" in text
    assert "Cap" in chart.read_text() and "F1 change" in chart.read_text()
    assert Path(tmp_path / "charts" / "compare.svg").stat().st_size > 1000
