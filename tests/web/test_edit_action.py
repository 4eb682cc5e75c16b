"""The gallery card's Edit action in a real browser: a new prompt and a strength, sent as a remix of the video
(``POST /v1/videos/{id}/remix``), and the new job followed like any other."""

from __future__ import annotations

from typing import Any

from .conftest import Server


def _card(page: Any, video_id: str) -> Any:
    return page.locator(f"li.card[data-id='{video_id}']")


def test_edit_remixes_a_completed_video(open_page: Any, server: Server) -> None:
    done = server.make_video(prompt="sunrise over mountains", seed=7)
    assert done["status"] == "completed"
    visit = open_page()
    page = visit.page
    card = _card(page, done["id"])
    card.wait_for()
    card.get_by_role("button", name="Edit").click()
    form = card.locator("form.edit-form")
    assert form.get_by_label("New prompt").input_value() == "sunrise over mountains"  # starts from the old prompt
    form.get_by_label("New prompt").fill("sunrise over mountains in heavy snow")
    form.get_by_label("Strength").fill("0.7")
    form.get_by_role("button", name="Remix").click()
    page.wait_for_function(f"() => document.querySelector('#gallery li.card').dataset.id !== '{done['id']}'")
    new_id = str(page.locator("#gallery li.card").first.get_attribute("data-id"))
    _card(page, new_id).locator(".status", has_text="completed").wait_for()
    assert card.locator("form.edit-form").count() == 0  # closed once sent
    with server.api() as c:
        made = c.get(f"/v1/videos/{new_id}").json()
    assert made["remixed_from_video_id"] == done["id"] and made["prompt"] == "sunrise over mountains in heavy snow"
    assert made["recipe"]["mode"] == "edit" and made["recipe"]["strength"] == 0.7
    assert made["recipe"]["num_inference_steps"] == 2  # the source's steps, as Re-run keeps them
    assert visit.console_errors == []


def test_edit_shows_the_services_refusal(open_page: Any, server: Server) -> None:
    # the slow test backend does not edit: the service's 400 (naming who does) appears on the card
    done = server.make_video(prompt="a red ball", model="slow", steps=2)
    assert done["status"] == "completed"
    page = open_page().page
    card = _card(page, done["id"])
    card.wait_for()
    card.get_by_role("button", name="Edit").click()
    card.locator("form.edit-form").get_by_role("button", name="Remix").click()
    error = card.locator(".card-action-error")
    error.wait_for()
    assert "video editing" in error.inner_text() and "builtin" in error.inner_text()
    assert card.locator("form.edit-form").count() == 1  # kept open, to try again
