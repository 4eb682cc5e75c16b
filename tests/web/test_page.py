"""The web page in a real browser (Debian's Chromium, headless): what a person without a terminal does."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from .conftest import DESKTOP, JOB_TIMEOUT_MS, PHONE, Server, save_screenshot, update_screenshots


def _fast_settings(page: Any, seed: int | None = None) -> None:
    """Open the advanced settings and ask for 2 denoising steps (a one-second job with the tiny model)."""
    if not page.locator("#advanced").evaluate("d => d.open"):
        page.locator("#advanced summary").click()
    page.fill("#steps", "2")
    if seed is not None:
        page.fill("#seed", str(seed))


def _card(page: Any, video_id: str) -> Any:
    return page.locator(f"li.card[data-id='{video_id}']")


def _newest_id(page: Any) -> str:
    return str(page.locator("#gallery li.card").first.get_attribute("data-id"))


def _video_state(page: Any, video_id: str) -> dict[str, Any]:
    sel = f"li.card[data-id='{video_id}'] video"
    page.wait_for_function(
        f'() => {{ const v = document.querySelector("{sel}"); return v && v.readyState >= 2 && v.duration > 0; }}',
        timeout=JOB_TIMEOUT_MS,
    )
    return dict(
        page.eval_on_selector(
            sel, "v => ({duration: v.duration, readyState: v.readyState, width: v.videoWidth, src: v.currentSrc})"
        )
    )


def test_prompt_to_playing_video(open_page: Any, server: Server) -> None:
    visit = open_page()
    page = visit.page
    assert page.title() == "Kinema"
    # the form is shaped by GET /v1/models: the built-in backend's only size and its frame rule
    assert page.input_value("#size") == "128x128"
    assert page.locator("#duration option").first.inner_text().startswith("2 s")
    page.fill("#prompt", "a red ball bouncing on green grass")
    _fast_settings(page)
    page.click("#submit")
    page.wait_for_selector("#current:not([hidden])")
    video_id = _newest_id(page)
    assert video_id.startswith("video_")
    seen: set[int] = set()
    deadline = time.monotonic() + JOB_TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        value = int(page.get_attribute("#current-bar", "aria-valuenow") or 0)
        seen.add(value)
        if value == 100:
            break
        time.sleep(0.05)
    assert 100 in seen, f"progress never reached 100% (saw {sorted(seen)})"
    assert page.inner_text("#current-percent") == "100%"
    assert page.inner_text("#current-title").startswith("Done")
    state = _video_state(page, video_id)
    assert state["duration"] > 0 and state["readyState"] >= 2 and state["width"] == 128
    assert state["src"].startswith("blob:")  # fetched with the key, then played in place
    card = _card(page, video_id)
    assert card.locator(".status").inner_text().lower() == "completed"
    assert "seed" in card.locator(".badges").inner_text()
    assert "took" in card.locator(".card-times").inner_text()
    # the same job through the API agrees with what the page shows
    with server.api() as c:
        assert c.get(f"/v1/videos/{video_id}").json()["status"] == "completed"
    assert visit.foreign_requests(server.url) == []
    assert any(u.endswith("/v1/models") for u in visit.requests)
    assert visit.console_errors == []


def test_progress_shows_stage_step_and_time_left(open_page: Any, server: Server) -> None:
    # the test backend takes 0.1 s per step, so 20 steps are watched live for two seconds
    visit = open_page()
    page = visit.page
    page.select_option("#model", "slow")
    page.fill("#prompt", "a slow test job")
    _fast_settings(page)
    page.fill("#steps", "20")
    page.click("#submit")
    page.wait_for_selector("#current:not([hidden])")
    video_id = _newest_id(page)
    seen: list[tuple[str, str, str]] = []
    deadline = time.monotonic() + JOB_TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        now = (page.inner_text("#current-stage"), page.inner_text("#current-step"), page.inner_text("#current-eta"))
        if not seen or seen[-1] != now:
            seen.append(now)
        if page.inner_text("#current-title").startswith("Done"):
            break
        time.sleep(0.03)
    steps = [int(m.group(1)) for _, step, _ in seen if (m := re.fullmatch(r"step (\d+) of 20", step))]
    assert len(steps) >= 2 and steps == sorted(steps), seen
    assert any(stage == "denoising" for stage, step, _ in seen if step.startswith("step")), seen
    assert any(re.fullmatch(r"about \d+ s", eta) for _, step, eta in seen if step.startswith("step")), seen
    card = _card(page, video_id)
    assert card.locator(".status").inner_text().lower() == "completed"
    assert visit.console_errors == []


def test_server_errors_shown_next_to_the_field(open_page: Any, server: Server) -> None:
    page = open_page().page
    with server.api() as c:
        before = len(c.get("/v1/videos?limit=100").json()["data"])
    page.fill("#prompt", "")
    page.click("#submit")
    error = page.locator("#prompt-error")
    error.wait_for(state="visible")
    assert error.inner_text().startswith("prompt:")
    assert page.get_attribute("#prompt", "aria-invalid") == "true"
    assert page.locator("#size-error").is_hidden()

    page.fill("#prompt", "a red ball")
    page.fill("#size", "64x64")
    page.click("#submit")
    size_error = page.locator("#size-error")
    size_error.wait_for(state="visible")
    text = size_error.inner_text()
    assert text.startswith("size:") and "64x64" in text and "128x128" in text  # the server's own message
    assert page.locator("#prompt-error").is_hidden()  # the previous error was cleared
    with server.api() as c:
        assert len(c.get("/v1/videos?limit=100").json()["data"]) == before  # nothing was queued


def test_api_key_entered_once_and_kept(open_page: Any, server: Server) -> None:
    visit = open_page(with_key=False)
    page = visit.page
    dialog = page.locator("#key-dialog")
    dialog.wait_for(state="visible")
    page.fill("#api-key", "kin_not-a-real-key")
    page.click("#key-save")
    page.wait_for_function("() => document.getElementById('key-error').textContent.includes('refused')")
    assert dialog.is_visible()
    page.fill("#api-key", server.key)
    page.keyboard.press("Enter")
    page.wait_for_selector("body[data-ready='1']")
    assert page.evaluate("localStorage.getItem('kinema.apiKey')") == server.key
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    assert dialog.is_hidden()
    assert page.locator("#model option").count() > 0
    # the key travels only in the Authorization header, never in a URL
    assert not any(server.key in u for u in visit.requests)


def test_rerun_new_seed_and_delete_from_the_gallery(open_page: Any, server: Server) -> None:
    done = server.make_video(prompt="sunrise over mountains", seed=1234)
    assert done["status"] == "completed"
    page = open_page().page
    card = _card(page, done["id"])
    card.wait_for()
    assert "seed 1234" in card.locator(".badges").inner_text()
    assert '"seed": 1234' in card.locator(".recipe pre").text_content()

    card.get_by_role("button", name="Re-run").click()
    page.wait_for_function(f"() => document.querySelector('#gallery li.card').dataset.id !== '{done['id']}'")
    same = _newest_id(page)
    new_card = _card(page, same)
    new_card.locator(".status", has_text="completed").wait_for()
    with server.api() as c:
        again = c.get(f"/v1/videos/{same}").json()
    assert again["seed"] == 1234 and again["prompt"] == "sunrise over mountains"
    assert again["recipe"]["num_inference_steps"] == 2 and again["size"] == "128x128"

    card.get_by_role("button", name="New seed").click()
    page.wait_for_function(f"() => document.querySelector('#gallery li.card').dataset.id !== '{same}'")
    other = _newest_id(page)
    _card(page, other).locator(".status", has_text="completed").wait_for()
    with server.api() as c:
        fresh = c.get(f"/v1/videos/{other}").json()
    assert fresh["prompt"] == "sunrise over mountains" and fresh["seed"] != 1234

    delete = card.get_by_role("button", name="Delete")
    delete.click()
    card.get_by_role("button", name="Really delete?").click()
    card.wait_for(state="detached")
    with server.api() as c:
        assert c.get(f"/v1/videos/{done['id']}").status_code == 404


def _png(width: int = 64, height: int = 64) -> bytes:
    import io

    from PIL import Image

    img = Image.new("RGB", (width, height), (20, 120, 220))
    img.paste((230, 40, 40), (0, 0, width // 2, height))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_rerun_of_an_image_to_video_job_sends_its_image_again(open_page: Any, server: Server) -> None:
    """Re-run on an image-to-video card refused ("choose the image again"); the page now keeps the image it sent."""
    visit = open_page()
    page = visit.page
    page.wait_for_selector("#image-field:not([hidden])")
    page.set_input_files("#image", files=[{"name": "start.png", "mimeType": "image/png", "buffer": _png()}])
    page.fill("#prompt", "a red ball bouncing on green grass")
    _fast_settings(page, seed=42)
    shown = "() => [...document.querySelectorAll('#gallery li.card')].map(c => c.dataset.id)"
    earlier = page.evaluate(shown)  # other tests' cards on the same server: the new one is none of them
    page.click("#submit")
    page.wait_for_function(f"() => ({shown})().some(id => !{json.dumps(earlier)}.includes(id))")
    first = _newest_id(page)
    assert first not in earlier
    card = _card(page, first)
    card.locator(".status", has_text="completed").wait_for()

    card.get_by_role("button", name="Re-run").click()
    # either a new card on top or the card's refusal, whichever comes first
    refused = f"!document.querySelector(\"li.card[data-id='{first}'] .card-action-error\").hidden"
    page.wait_for_function(f"() => document.querySelector('#gallery li.card').dataset.id !== '{first}' || {refused}")
    assert card.locator(".card-action-error").is_hidden(), card.locator(".card-action-error").inner_text()
    again_id = _newest_id(page)
    _card(page, again_id).locator(".status", has_text="completed").wait_for()
    with server.api() as c:
        before = c.get(f"/v1/videos/{first}").json()
        again = c.get(f"/v1/videos/{again_id}").json()
    assert again["recipe"]["mode"] == "i2v" and again["seed"] == 42
    assert again["recipe"]["image"]["sha256"] == before["recipe"]["image"]["sha256"]
    # the recipe names the input by its digest, not by where the server keeps it
    assert str(server.data_dir) not in json.dumps(again["recipe"])

    # after a reload the page no longer holds the image: it fetches it back from the job (variant=input_reference)
    page.reload()
    card = _card(page, first)
    card.locator(".status", has_text="completed").wait_for()
    card.get_by_role("button", name="Re-run").click()
    newest = "document.querySelector('#gallery li.card').dataset.id"
    page.wait_for_function(f"() => !['{first}', '{again_id}'].includes({newest}) || {refused}")
    assert card.locator(".card-action-error").is_hidden(), card.locator(".card-action-error").inner_text()
    third_id = _newest_id(page)
    _card(page, third_id).locator(".status", has_text="completed").wait_for()
    with server.api() as c:
        third = c.get(f"/v1/videos/{third_id}").json()
    assert third["recipe"]["mode"] == "i2v"
    assert third["recipe"]["image"]["sha256"] == before["recipe"]["image"]["sha256"]
    assert visit.console_errors == []


def test_example_prompts_fill_the_prompt(open_page: Any) -> None:
    page = open_page().page
    examples = page.locator("#examples .example")
    assert examples.count() >= 4
    example = page.get_by_role("button", name="a yellow fish swimming to the right in the ocean")
    example.click()
    assert page.input_value("#prompt") == "a yellow fish swimming to the right in the ocean"
    assert page.evaluate("document.activeElement.id") == "prompt"


def test_failed_job_shows_its_error_in_plain_words(open_page: Any, server: Server) -> None:
    # the built-in backend does not fail on demand, so the row is written as a worker writes a failure; its kind is
    # one no worker runs, so nothing claims it in between
    import json

    from kinema.service.store import Store

    store = Store(server.data_dir / "kinema.sqlite3")
    owner = store.authenticate(server.key)
    assert owner is not None
    job = store.submit_job(
        owner=owner,
        request={"prompt": "red ball"},
        max_attempts=1,
        kind="test-only",
        summary={"prompt": "red ball", "backend": "builtin", "seconds": "2", "size": "128x128"},
    )
    error = {
        "code": "generation_failed",
        "message": "RuntimeError: the model ran out of memory",
        "param": None,
        "type": "server_error",
    }
    with store.transaction() as con:
        con.execute("UPDATE jobs SET status='failed', error=? WHERE id=?", (json.dumps(error), job.id))
    page = open_page().page
    card = _card(page, job.id)
    shown = card.locator(".card-error")
    shown.wait_for()
    assert shown.inner_text() == "Failed: The model ran out of memory"
    assert card.get_by_role("button", name="Re-run").is_visible()


def test_storyboard_from_the_page_with_per_scene_progress(open_page: Any, server: Server) -> None:
    page = open_page().page
    page.get_by_role("tab", name="Storyboard").click()
    page.fill("#sb-title", "Valley morning")
    scenes = page.locator("#scenes li.scene")
    assert scenes.count() == 2
    scenes.nth(0).locator("textarea").fill("sunrise over mountains")
    scenes.nth(0).locator("select").select_option("fade:0.5")
    scenes.nth(1).locator("textarea").fill("clouds moving over mountains")
    _fast_settings(page, seed=7)
    page.click("#submit")
    page.wait_for_selector("#scene-progress:not([hidden])")
    video_id = _newest_id(page)
    states: set[tuple[str, ...]] = set()
    deadline = time.monotonic() + JOB_TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        now = tuple(page.eval_on_selector_all("#scene-progress li", "els => els.map(e => e.dataset.state || '')"))
        states.add(now)
        if now == ("done", "done") and page.inner_text("#current-percent") == "100%":
            break
        time.sleep(0.05)
    assert ("done", "done") in states
    assert ("generating", "waiting") in states or ("done", "generating") in states, states
    assert page.inner_text("#current-percent") == "100%"
    card = _card(page, video_id)
    assert "Valley morning" in card.locator(".card-prompt").inner_text()
    assert "storyboard" in card.locator(".badges").inner_text()
    state = _video_state(page, video_id)
    assert state["duration"] > 0
    with server.api() as c:
        job = c.get(f"/v1/videos/{video_id}").json()
    assert job["kind"] == "storyboard" and job["status"] == "completed"
    assert [s["prompt"] for s in job["recipe"]["scenes"]] == ["sunrise over mountains", "clouds moving over mountains"]
    assert job["recipe"]["scenes"][0]["transition"].startswith("fade")


def test_storyboard_error_points_at_the_scene(open_page: Any) -> None:
    page = open_page().page
    page.get_by_role("tab", name="Storyboard").click()
    scenes = page.locator("#scenes li.scene")
    scenes.nth(0).locator("textarea").fill("sunrise")
    scenes.nth(1).locator("textarea").fill("")
    page.click("#submit")
    error = scenes.nth(1).locator("[data-scene-field='prompt']")
    error.wait_for(state="visible")
    assert error.inner_text().startswith("scenes[1].prompt:")


def test_keyboard_reaches_the_form(open_page: Any) -> None:
    page = open_page().page
    reached: list[str] = []
    for _ in range(40):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.id || document.activeElement.className"))
        if reached[-1] == "submit":
            break
    assert "prompt" in reached and "model" in reached and reached[-1] == "submit", reached
    page.focus("#tab-video")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.id") == "tab-storyboard"
    assert page.locator("#pane-storyboard").is_visible()


def test_phone_layout_has_no_horizontal_overflow(open_page: Any, server: Server, tmp_path: Path) -> None:
    with server.api() as c:
        if not c.get("/v1/videos?limit=1").json()["data"]:  # a card to lay out (other tests may have made one)
            server.make_video(prompt="red ball on green grass", seed=11)
    visit = open_page(viewport=PHONE)
    page = visit.page
    page.locator("#gallery li.card").first.wait_for()
    for tab in ("Video", "Storyboard"):
        page.get_by_role("tab", name=tab).click()
        page.locator("#advanced summary").click()
        overflow = page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{tab}: the page is {overflow}px wider than a phone"
        wide = page.evaluate("""() => [...document.querySelectorAll('body *')].filter(e => {
            const r = e.getBoundingClientRect(); return r.width > 0 && r.right > window.innerWidth + 1;
        }).map(e => e.id || e.className).slice(0, 5)""")
        assert wide == [], f"{tab}: elements beyond the screen's edge: {wide}"
    assert visit.foreign_requests(server.url) == []


def test_screenshots_desktop_and_phone(open_page: Any, server: Server, tmp_path: Path) -> None:
    """Screenshots for docs/ (written there only with KINEMA_UPDATE_SCREENSHOTS=1)."""
    if update_screenshots():  # a gallery worth looking at
        for prompt, seed in (
            ("sunrise over mountains", 21),
            ("a red ball bouncing on green grass", 22),
            ("clouds moving over mountains", 23),
        ):
            server.make_video(prompt=prompt, seed=seed)
    for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page = open_page(viewport=viewport).page
        page.locator("#gallery li.card").first.wait_for()
        page.fill("#prompt", "A red fox trots through fresh snow in a birch forest. Tracking shot. Golden hour.")
        page.wait_for_function("() => [...document.querySelectorAll('#gallery img.thumb')].every(i => i.complete)")
        shot = save_screenshot(page, name, tmp_path)
        from PIL import Image

        with Image.open(shot) as img:
            assert img.size == (viewport["width"], viewport["height"])
            # getcolors, not getdata (deprecated in Pillow 12): the distinct colours of 32x32 samples
            assert len(img.convert("RGB").resize((32, 32)).getcolors(32 * 32) or []) > 8  # not a blank page
