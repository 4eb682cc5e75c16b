"""The form's last-frame picker and reference images in a real browser (issue 27): each shown by the chosen model's
modes (``GET /v1/models``), sent in the multipart ``POST /v1/videos`` as ``last_image`` and repeated ``references``
parts, and the service's refusals shown at the field."""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

from .conftest import Server

FAST = 2  # denoising steps: a one-second job with the tiny built-in model


def _png(colour: tuple[int, int, int], size: int = 64) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="PNG")
    return buf.getvalue()


def _file(name: str, data: bytes) -> dict[str, Any]:
    return {"name": name, "mimeType": "image/png", "buffer": data}


def _fast(page: Any, seed: int) -> None:
    if not page.locator("#advanced").evaluate("d => d.open"):
        page.locator("#advanced summary").click()
    page.fill("#steps", str(FAST))
    page.fill("#seed", str(seed))


def _card(page: Any, video_id: str) -> Any:
    return page.locator(f"li.card[data-id='{video_id}']")


def _spy_forms(page: Any) -> None:
    """Record the parts of every multipart body the page sends (Playwright does not expose a multipart body with
    files in Chromium: its post_data is None), as [name, file name or value] pairs in ``window.sentForms``."""
    page.evaluate("""() => {
        window.sentForms = [];
        const real = window.fetch;
        window.fetch = (url, init = {}) => {
            if (init.body instanceof FormData) {
                window.sentForms.push([...init.body.entries()].map(([k, v]) => [k, v instanceof File ? v.name : v]));
            }
            return real(url, init);
        };
    }""")


def _sent_forms(page: Any) -> list[list[list[str]]]:
    return list(page.evaluate("window.sentForms"))


def _new_card_after(page: Any, shown_before: list[str]) -> str:
    """The id of the first card on top that was not in the gallery before (other tests share the server)."""
    ids = "() => [...document.querySelectorAll('#gallery li.card')].map(c => c.dataset.id)"
    page.wait_for_function(f"() => ({ids})().some(id => !{json.dumps(shown_before)}.includes(id))")
    return str(page.locator("#gallery li.card").first.get_attribute("data-id"))


def _ids(page: Any) -> list[str]:
    return list(page.eval_on_selector_all("#gallery li.card", "cards => cards.map(c => c.dataset.id)"))


def _pixels(path: Any) -> set[Any]:
    """The distinct (r, g, b) colours of an image."""
    from PIL import Image

    with Image.open(path) as img:
        return {c for _, c in img.convert("RGB").getcolors(1 << 16) or []}


def test_last_frame_makes_a_keyframes_job_and_reruns(open_page: Any, server: Server) -> None:
    from kinema.service.config import ServiceConfig

    visit = open_page()
    page = visit.page
    # the built-in model offers keyframes but not references
    assert page.get_by_label("Last frame").is_visible()
    assert page.locator("#references-field").is_hidden()
    start, last = (20, 120, 220), (230, 40, 40)
    page.set_input_files("#image", files=[_file("start.png", _png(start))])
    page.get_by_label("Last frame").set_input_files(files=[_file("end.png", _png(last))])
    assert page.get_by_role("button", name="Clear last frame").is_visible()
    page.fill("#prompt", "a red ball bouncing on green grass")
    _fast(page, seed=5)
    _spy_forms(page)
    before = _ids(page)
    page.click("#submit")
    first = _new_card_after(page, before)
    parts = _sent_forms(page)[0]
    assert ["last_image", "end.png"] in parts and ["input_reference", "start.png"] in parts
    _card(page, first).locator(".status", has_text="completed").wait_for()
    with server.api() as c:
        job = c.get(f"/v1/videos/{first}").json()
    recipe = job["recipe"]
    assert recipe["mode"] == "keyframes" and recipe["image"] and recipe["last_image"]
    # the last frame reached the server as sent: the stored input (re-encoded PNG) is the image's colour only
    stored = ServiceConfig(data_dir=server.data_dir).inputs_dir / f"{first}.last.png"
    assert _pixels(stored) == {last}
    assert recipe["last_image"]["sha256"] == hashlib.sha256(stored.read_bytes()).hexdigest()

    # Re-run sends the same start image and last frame again (the page keeps what it sent)
    card = _card(page, first)
    card.get_by_role("button", name="Re-run").click()
    refused = f"!document.querySelector(\"li.card[data-id='{first}'] .card-action-error\").hidden"
    page.wait_for_function(f"() => document.querySelector('#gallery li.card').dataset.id !== '{first}' || {refused}")
    assert card.locator(".card-action-error").is_hidden(), card.locator(".card-action-error").inner_text()
    again_id = str(page.locator("#gallery li.card").first.get_attribute("data-id"))
    _card(page, again_id).locator(".status", has_text="completed").wait_for()
    with server.api() as c:
        again = c.get(f"/v1/videos/{again_id}").json()["recipe"]
    assert again["mode"] == "keyframes" and again["seed"] == 5
    assert again["last_image"]["sha256"] == recipe["last_image"]["sha256"]
    assert again["image"]["sha256"] == recipe["image"]["sha256"]

    # after a reload the page fetches the start image and the last frame back from the job (/content variants)
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    before = _ids(page)
    _card(page, first).get_by_role("button", name="Re-run").click()
    third = _new_card_after(page, before)
    _card(page, third).locator(".status", has_text="completed").wait_for()
    with server.api() as c:
        fetched = c.get(f"/v1/videos/{third}").json()["recipe"]
    assert fetched["last_image"]["sha256"] == recipe["last_image"]["sha256"]
    assert fetched["image"]["sha256"] == recipe["image"]["sha256"]

    # a last frame the server no longer keeps: the card says to choose it again
    stored.unlink()
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    card = _card(page, first)
    card.get_by_role("button", name="Re-run").click()
    error = card.locator(".card-action-error")
    error.wait_for(state="visible")
    assert "Last frame" in error.inner_text() and "choose it again" in error.inner_text()
    # the browser logs the deleted last frame's 404 (the answer the page reads); nothing else may fail
    assert [e for e in visit.console_errors if "status of 404" not in e] == [], visit.console_errors


def test_pickers_follow_the_models_modes_and_refusals_show_at_the_field(open_page: Any, server: Server) -> None:
    page = open_page().page
    assert page.locator("#last-field").is_visible()
    page.select_option("#model", "slow")  # the test backend: t2v and i2v, no keyframes
    assert page.locator("#last-field").is_hidden() and page.locator("#image-field").is_visible()
    assert page.locator("#references-field").is_hidden()
    page.select_option("#model", "builtin")
    assert page.locator("#last-field").is_visible()

    # not an image: the service's 422 names last_image, and the page shows it under the picker
    with server.api() as c:
        count = len(c.get("/v1/videos?limit=100").json()["data"])
    page.get_by_label("Last frame").set_input_files(files=[_file("notes.png", b"this is not an image")])
    page.fill("#prompt", "a red ball")
    _fast(page, seed=1)
    page.click("#submit")
    error = page.locator("#last-image-error")
    error.wait_for(state="visible")
    assert error.inner_text().startswith("last_image")
    assert page.get_attribute("#last-image", "aria-invalid") == "true"
    assert page.locator("#form-error").is_hidden() and page.locator("#image-error").is_hidden()
    with server.api() as c:
        assert len(c.get("/v1/videos?limit=100").json()["data"]) == count  # nothing was queued

    # Clear empties the picker (by keyboard too) and its error
    clear = page.get_by_role("button", name="Clear last frame")
    clear.focus()
    page.keyboard.press("Enter")
    assert page.evaluate("document.getElementById('last-image').files.length") == 0
    assert error.is_hidden() and clear.is_hidden()
    assert page.evaluate("document.activeElement.id") == "last-image"


def _with_references(route: Any, max_references: int) -> None:
    """GET /v1/models as the service answers it, with the built-in model said to take reference images: no backend
    shipped with Kinema takes them yet, and the service itself (which still runs the built-in model) refuses them."""
    answer = route.fetch()
    body = answer.json()
    for entry in body["data"]:
        if entry["id"] == "builtin":
            entry["capabilities"]["modes"].append("references")
            entry["capabilities"]["max_references"] = max_references
    route.fulfill(response=answer, json=body)


def test_reference_images_limit_exclusion_and_refusal(open_page: Any, server: Server) -> None:
    visit = open_page()
    page = visit.page
    page.route("**/v1/models", lambda route: _with_references(route, 2))
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    field = page.locator("#references-field")
    assert field.is_visible()
    assert "up to 2 images" in field.locator("label").inner_text()
    refs = page.get_by_label("Reference images")
    _spy_forms(page)

    # over the model's limit: refused in the page, at the field, before any upload
    page.fill("#prompt", "a red ball")
    _fast(page, seed=3)
    refs.set_input_files(files=[_file(f"ref{i}.png", _png((40 * i, 90, 90))) for i in range(3)])
    error = page.locator("#references-error")
    error.wait_for(state="visible")
    assert "3 images" in error.inner_text() and "at most 2" in error.inner_text()
    page.click("#submit")
    error.wait_for(state="visible")
    assert _sent_forms(page) == []

    # within it: a start image and a last frame cannot go with references, so their pickers are disabled
    refs.set_input_files(files=[_file(f"ref{i}.png", _png((40 * i, 90, 90))) for i in range(2)])
    assert error.is_hidden()
    assert page.locator("#image").is_disabled() and page.locator("#last-image").is_disabled()
    page.click("#submit")
    error.wait_for(state="visible")
    (parts,) = _sent_forms(page)
    assert [p for p in parts if p[0] in ("references", "input_reference", "last_image")] == [
        ["references", "ref0.png"],
        ["references", "ref1.png"],
    ]
    # the service's own refusal (the built-in model takes no references), under the picker that sent them
    assert error.inner_text().startswith("references") and "does not support reference images" in error.inner_text()
    assert page.locator("#form-error").is_hidden()

    # cleared, the start image and last frame are back; chosen, they disable the references in turn
    page.get_by_role("button", name="Clear reference images").click()
    assert page.locator("#image").is_enabled() and page.locator("#last-image").is_enabled()
    page.get_by_label("Last frame").set_input_files(files=[_file("end.png", _png((230, 40, 40)))])
    assert refs.is_disabled()
    # the browser logs the refused upload itself; nothing else went wrong
    assert [e for e in visit.console_errors if "status of 400" not in e] == [], visit.console_errors
