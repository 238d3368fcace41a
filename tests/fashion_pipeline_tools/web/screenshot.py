"""Write the README screenshot: the UI with a sample image's garments outlined.

    .venv/bin/python -m tests.fashion_pipeline_tools.web.screenshot [docs/screenshot.png]

The page is served by ``webui.serve(LambdaBackend(fake handler))``; the fake answers with the
garment boxes of a generated sample image's annotation.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from tests.fashion_pipeline_tools.web.browser import launch, missing
from tests.fashion_pipeline_tools.web.fakes import FakeHandler, proxy, sample_image

ROOT = Path(__file__).resolve().parents[3]
VIEWPORT = {"width": 1200, "height": 800}


def take(out: Path, workdir: Path) -> Path:
    from playwright.sync_api import sync_playwright

    from fashion_pipeline_tools.webui import LambdaBackend, serve

    sample = sample_image(workdir, garments=3, confidences=[97.8, 88.4, 63.1])
    server = serve(LambdaBackend(FakeHandler(detections=proxy(200, sample.answer()))), port=0)
    try:
        with sync_playwright() as playwright:
            browser = launch(playwright)
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(server.url)
            page.wait_for_selector("#status[data-status=RUNNING]")
            page.set_input_files("#file", str(sample.path))
            page.wait_for_selector("body[data-state=done]")
            page.wait_for_timeout(150)
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out))
            browser.close()
    finally:
        server.shutdown()
    return out


def main(argv: list[str]) -> int:
    reason = missing()
    if reason:
        print(f"cannot take the screenshot: {reason}", file=sys.stderr)
        return 2
    out = Path(argv[0]) if argv else ROOT / "docs" / "screenshot.png"
    with tempfile.TemporaryDirectory() as workdir:
        print(take(out, Path(workdir)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
