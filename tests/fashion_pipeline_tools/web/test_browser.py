"""The page in a real browser (headless Chromium): upload, outlines, slider, errors."""

from __future__ import annotations

import base64
import json

import pytest

from fashion_pipeline_tools.webui import LambdaBackend, serve
from tests.fashion_pipeline_tools.web import browser as chromium
from tests.fashion_pipeline_tools.web.fakes import MODEL, MODEL_STATE, FakeHandler, error, proxy, sample_image

if chromium.missing():
    pytest.skip(chromium.missing(), allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        try:
            instance = chromium.launch(playwright)
        except Exception as exc:  # a chromium that cannot start here
            pytest.skip(f"chromium does not start: {exc}")
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return sample_image(tmp_path_factory.mktemp("sample"), garments=2, confidences=[93.6, 37.2])


@pytest.fixture
def handler(sample):
    return FakeHandler(detections=proxy(200, sample.answer()))


@pytest.fixture
def server(handler):
    server = serve(LambdaBackend(handler), port=0)
    yield server
    server.shutdown()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.url)
    yield page
    context.close()
    assert errors == []


def upload(page, path) -> None:
    page.set_input_files("#file", str(path))
    page.wait_for_selector("body[data-state=done], body[data-state=error]")


def test_detects_outlines_lists_and_filters(page, handler, sample):
    expect(page.locator("#status")).to_have_attribute("data-status", "RUNNING")
    expect(page.locator("#status")).to_contain_text(MODEL_STATE["version"])
    expect(page.locator("#status")).to_contain_text("F1 0.912")
    expect(page.locator("#emulated")).to_be_visible()

    page.fill("#slider", "0")
    upload(page, sample.path)
    assert page.locator("body").get_attribute("data-state") == "done"
    expect(page.locator("canvas#view")).to_be_visible()
    drawn = page.evaluate("window.lastDrawn")
    expected = [{"label": g["label"], "confidence": g["confidence"], **g["pixels"]} for g in sample.garments]
    assert drawn == expected

    items = page.locator("#garments li")
    expect(items).to_have_count(2)
    for item, garment in zip(items.all(), sample.garments):
        assert item.get_attribute("data-label") == garment["label"]
        expect(item).to_contain_text(garment["label"].replace("_", " "))
        expect(item).to_contain_text(f"{garment['confidence']:.1f}%")
    expect(page.locator("#summary")).to_contain_text("2 garments at 0% or more")
    assert "2 garments" in page.locator("canvas#view").get_attribute("aria-label")

    # The slider filters here: the low-confidence garment goes, and the API is not called again.
    page.fill("#slider", "50")
    expect(page.locator("#slider-value")).to_have_text("50%")
    expect(items).to_have_count(1)
    assert page.evaluate("window.lastDrawn") == expected[:1]
    expect(page.locator("#hidden-note")).to_contain_text("1 more below 50%")
    page.focus("#slider")
    page.keyboard.press("End")
    expect(items).to_have_count(0)
    assert page.evaluate("window.lastDrawn") == []
    page.keyboard.press("Home")
    expect(items).to_have_count(2)

    [event] = handler.detection_events()
    assert event["queryStringParameters"] == {"min_confidence": "0"}
    assert event["headers"]["Content-Type"] == "image/png"
    assert event["isBase64Encoded"] and base64.b64decode(event["body"]) == sample.data


def test_label_colours_are_stable_across_loads(page, sample):
    def colours():
        upload(page, sample.path)
        page.fill("#slider", "0")
        return [li.evaluate("e => e.style.getPropertyValue('--c')") for li in page.locator("#garments li").all()]

    first = colours()
    page.reload()
    assert colours() == first and len(set(first)) == 2


ERRORS = [
    (error(413, "image_too_large", "the image is 5000000 bytes; the limit is 4194304 bytes (4 MB)"), "Image too large", "4 MB"),
    (error(415, "unsupported_media_type", "GIF image; only JPEG and PNG are accepted"), "Not a JPEG or PNG", "Only JPEG and PNG"),
    (error(400, "image_dimensions", "40x40 px; each side must be 64 to 4096 px"), "could not be analysed", "between 64 and 4096"),
    (error(404, "image_not_found", "no object images/x.jpg"), "Not found", "dataset bucket"),
    (error(429, "throttled", "Rekognition is throttling requests; retry shortly", retry_after=2), "Too many requests", "Try again in 2 seconds"),
    (error(503, "model_starting", "the model is STARTING", retry_after=120, model={**MODEL, "status": "STARTING"}), "The model is starting", "Try again in about 2 minutes"),
    (error(503, "model_not_running", "the model is STOPPED, not RUNNING; start it with POST /model/start (an admin route)", model={**MODEL, "status": "STOPPED"}), "Model not available", "The model is STOPPED, not running. It has to be started"),
    (error(503, "model_not_deployed", "no model is deployed yet", model={"status": "NONE"}), "No model deployed", "training pipeline"),
    (error(500, "internal_error", "internal error; quote request id abc-123 when reporting it"), "went wrong", "request id"),
]


def test_api_errors_are_explained(page, handler, sample, subtests):
    alert = page.locator("#error")
    for answer, title, message in ERRORS:
        detail = json.loads(answer["body"])["error"]
        with subtests.test(status=answer["statusCode"], code=detail["code"]):
            handler.detections = answer
            model_reads = len([e for e in handler.events if e["path"] == "/model"])
            upload(page, sample.path)
            expect(alert).to_be_visible()
            expect(alert).to_have_attribute("role", "alert")
            expect(alert).to_have_attribute("data-status", str(answer["statusCode"]))
            expect(page.locator("#error-title")).to_contain_text(title)
            expect(page.locator("#error-message")).to_contain_text(message)
            expect(page.locator("#error-detail")).to_contain_text(detail["message"])
            expect(page.locator("#garments li")).to_have_count(0)
            assert page.evaluate("window.lastDrawn") == []
            # The model status is read again after an error.
            for _ in range(100):
                if len([e for e in handler.events if e["path"] == "/model"]) > model_reads:
                    break
                page.wait_for_timeout(20)
            else:
                pytest.fail("GET /model was not called again after the error")

    handler.detections = proxy(200, sample.answer())  # the next image works and clears the message
    upload(page, sample.path)
    expect(alert).to_be_hidden()
    expect(page.locator("#garments li")).to_have_count(1)


def test_the_model_status_shows_a_stopped_model_after_an_error(page, handler, sample):
    handler.model = proxy(200, {**MODEL_STATE, "status": "STOPPED", "emulated": False})
    handler.detections = error(503, "model_not_running", "the model is STOPPED, not RUNNING; start it with POST /model/start (an admin route)", model={**MODEL, "status": "STOPPED"})
    upload(page, sample.path)
    expect(page.locator("#status")).to_have_attribute("data-status", "STOPPED")
    expect(page.locator("#emulated")).to_be_hidden()


def test_a_network_failure_is_explained(page, sample):
    page.route("**/detections*", lambda route: route.abort())
    upload(page, sample.path)
    expect(page.locator("#error-title")).to_have_text("Cannot reach the API")
    expect(page.locator("#error")).to_have_attribute("data-code", "network")


def test_no_model_deployed_status(browser, handler, server):
    handler.model = proxy(200, {"status": "NONE", "message": "no model is deployed yet", "emulated": False})
    page = browser.new_page()
    page.goto(server.url)
    expect(page.locator("#status")).to_have_attribute("data-status", "NONE")
    expect(page.locator("#status")).to_contain_text("No model deployed")
    page.close()


def test_dropping_a_file(page, handler, sample):
    data = base64.b64encode(sample.data).decode()
    transfer = page.evaluate_handle(
        """(data) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "dropped.png", { type: "image/png" }));
            return transfer;
        }""",
        data,
    )
    page.dispatch_event("#drop", "dragenter", {"dataTransfer": transfer})
    expect(page.locator("#drop")).to_have_class("stage dragging")
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
    page.wait_for_selector("body[data-state=done]")
    expect(page.locator("#garments li")).to_have_count(1)  # the default threshold, 50%
    expect(page.locator("#file-name")).to_contain_text("dropped.png")
    assert base64.b64decode(handler.detection_events()[0]["body"]) == sample.data


def test_controls_are_labelled_and_keyboard_reachable(page):
    assert page.get_by_label("Minimum confidence").get_attribute("id") == "slider"
    assert page.get_by_label("Choose image").get_attribute("id") == "file"
    expect(page.locator("#summary")).to_have_attribute("aria-live", "polite")
    expect(page.locator("canvas#view")).to_have_attribute("role", "img")
    reached = set()
    for _ in range(8):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("document.activeElement.id"))
    assert {"pick", "file", "slider"} <= reached


def test_the_dataset_picker_chooses_whose_model_answers(browser, handler, server, sample):
    entry = {"status": "RUNNING", "version": "v", "arn": "arn:v", "f1": 0.5, "inference_units": 1}
    handler.models = proxy(200, {"default_dataset": "shoes", "models": [
        {**entry, "dataset": "demo", "default": False, "run_id": "20261202T055357Z-fc3db064"},
        {**entry, "dataset": "shoes", "default": True, "status": "STOPPED"}]})
    page = browser.new_page()
    page.goto(server.url)
    expect(page.locator("#picker")).to_be_visible()
    expect(page.locator("#dataset")).to_have_value("shoes")  # the API's default
    expect(page.locator("#report")).to_be_hidden()  # shoes' model names no run
    expect(page.locator("#dataset option")).to_have_text(["demo · running", "shoes · stopped"])
    page.select_option("#dataset", "demo")
    expect(page.locator("#report")).to_have_attribute("href", "./reports/demo/20261202T055357Z-fc3db064/")
    upload(page, sample.path)
    queries = [(e["path"], (e.get("queryStringParameters") or {}).get("dataset")) for e in handler.events if e["path"] != "/models"]
    assert ("/model", "shoes") in queries and ("/model", "demo") in queries
    assert [q for path, q in queries if path == "/detections"] == ["demo"]
    page.close()


def test_one_dataset_shows_no_picker(page, handler):
    expect(page.locator("#picker")).to_be_hidden()
    assert not [e for e in handler.events if e["path"] == "/model" and (e.get("queryStringParameters") or {}).get("dataset")]


def test_screenshot(page, sample, tmp_path):
    page.fill("#slider", "0")
    upload(page, sample.path)
    out = tmp_path / "shot.png"
    page.screenshot(path=str(out))
    assert out.read_bytes().startswith(b"\x89PNG") and out.stat().st_size > 10_000
