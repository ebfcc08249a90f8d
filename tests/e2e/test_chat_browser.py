"""The chat in a real headless Chromium (Playwright driving Debian's /usr/bin/chromium): what a person sees.

Screenshots go to test-artifacts/ (the plan, the live steps, the final answer, ...).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.e2e.server import APPROVAL_FLOW, REPO, ChatServer, add_user, start_server

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
ARTIFACTS = REPO / "test-artifacts"
DIFF = ("diff --git a/app.py b/app.py\n--- a/app.py\n+++ b/app.py\n@@ -1,2 +1,4 @@\n import os\n"
        "+cmd = input()\n+os.system(cmd)\n")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert os.path.exists(CHROMIUM), "Debian's chromium is missing: apt-get install -y chromium chromium-driver"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatServer]:
    srv = start_server(tmp_path_factory.mktemp("chat-e2e"),
                       env={"CHIEF_OFFLINE_LATENCY_MS": "1500", "CHIEF_MAX_FILE_MB": "1"})
    try:
        yield srv
    finally:
        srv.stop()


def new_page(browser: Browser, url: str) -> Page:
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    # Offline: the page's CDN stylesheets would only time out.
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(url) else route.abort())
    page.set_default_timeout(30_000)
    return page


def shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def open_chat(browser: Browser, server: ChatServer) -> Page:
    page = new_page(browser, server.url)
    page.goto(server.url)
    expect(page.get_by_text("Hello — I am the Chief").last).to_be_visible()  # the composer is ready after this
    return page


def send(page: Page, text: str, files: list[Path] | None = None) -> None:
    if files:
        page.set_input_files("#upload-button-input", [str(f) for f in files])
        expect(page.locator("#attachments")).to_contain_text(files[-1].name)
    page.locator("#chat-input").fill(text)
    expect(page.locator("#chat-submit")).to_be_enabled()
    page.click("#chat-submit")


def board(page: Page) -> object:
    return page.locator("[data-plan-board]").last


def test_e2e_request_with_file_plan_parallel_steps_and_answer(browser: Browser, server: ChatServer,
                                                              tmp_path: Path) -> None:
    diff = tmp_path / "changes.diff"
    diff.write_text(DIFF)
    page = open_chat(browser, server)
    send(page, "Review this change for security and quality", [diff])
    expect(page.get_by_text("Plan: code-review").first).to_be_visible()
    expect(page.get_by_text("any code-quality agent").first).to_be_visible()
    shot(page, "chat-plan")
    live = board(page)
    # The two parallel steps run side by side: both running at once, on the same row of the drawing.
    expect(live.locator('[data-step="security-audit"][data-status="running"]')).to_be_visible(timeout=30_000)
    expect(live.locator('[data-step="quality-check"][data-status="running"]')).to_be_visible()
    a = live.locator('[data-step="security-audit"] rect').bounding_box()
    b = live.locator('[data-step="quality-check"] rect').bounding_box()
    assert a and b and abs(a["y"] - b["y"]) < 1 and a["x"] != b["x"]
    expect(page.locator("button#step-security-audit")).to_be_visible()
    shot(page, "chat-live-steps")
    expect(live).to_have_attribute("data-run-status", "succeeded", timeout=60_000)
    answer = page.locator('div[data-step-type="assistant_message"]').last
    expect(answer).to_contain_text("the product lead of a software team")
    shot(page, "chat-final-answer")
    page.locator("button#step-aggregate").click()  # a finished step shows its output
    expect(page.get_by_text("✅ succeeded · product").first).to_be_visible()
    page.close()


def test_e2e_pause_and_resume_from_the_buttons(browser: Browser, server: ChatServer) -> None:
    page = open_chat(browser, server)
    send(page, "research the history of the transistor")
    live = board(page)
    expect(live.locator('[data-step="outline"][data-status="running"]')).to_be_visible()
    page.get_by_role("button", name="Pause").last.click()
    expect(live).to_have_attribute("data-run-status", "paused", timeout=30_000)
    expect(live.locator('[data-step="outline"]')).to_have_attribute("data-status", "succeeded")
    expect(live.locator('[data-step="edit"]')).to_have_attribute("data-status", "pending")
    shot(page, "chat-paused")
    page.get_by_role("button", name="Resume").last.click()
    expect(live).to_have_attribute("data-run-status", "succeeded", timeout=60_000)
    expect(page.locator('div[data-step-type="assistant_message"]').last).to_contain_text("a technical writer")
    page.close()


def test_e2e_approve_a_step(browser: Browser, server: ChatServer, tmp_path: Path) -> None:
    flow = tmp_path / "approve-demo.yaml"
    flow.write_text(APPROVAL_FLOW)
    page = open_chat(browser, server)
    send(page, "/run", [flow])
    live = board(page)
    expect(live.locator('[data-step="publish"][data-status="waiting"]')).to_be_visible(timeout=30_000)
    shot(page, "chat-waiting-approval")
    page.get_by_role("button", name="Approve publish").click()
    expect(live).to_have_attribute("data-run-status", "succeeded", timeout=30_000)
    expect(page.get_by_text("Step publish approved.")).to_be_visible()
    page.close()


def test_e2e_refused_type_and_too_large_file(browser: Browser, server: ChatServer, tmp_path: Path) -> None:
    png = tmp_path / "photo.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    big = tmp_path / "big.txt"
    big.write_bytes(b"a" * (1024 * 1024 + 10))
    page = open_chat(browser, server)
    send(page, "summarise these", [png, big])
    expect(page.get_by_text("photo.png: cannot read a PNG image")).to_be_visible()
    expect(page.get_by_text("big.txt: 1.0 MB is over the 1 MB limit")).to_be_visible()
    shot(page, "chat-refused-files")
    page.close()


def test_e2e_reload_mid_run_and_see_it_continue(browser: Browser, server: ChatServer) -> None:
    page = open_chat(browser, server)
    send(page, "research the history of the transistor")
    expect(board(page).locator('[data-step="outline"][data-status="running"]')).to_be_visible()
    page.reload()
    expect(page.get_by_text("Still running from before:")).to_be_visible()
    live = board(page)
    expect(live).to_have_attribute("data-run-status", "running")
    shot(page, "chat-after-reload")
    expect(live).to_have_attribute("data-run-status", "succeeded", timeout=60_000)
    expect(page.locator('div[data-step-type="assistant_message"]').last).to_contain_text("a technical writer")
    page.close()


def login(browser: Browser, server: ChatServer, name: str, password: str) -> Page:
    page = new_page(browser, server.url)
    page.goto(server.url + "/login")
    page.fill("#email", name)
    page.fill("#password", password)
    page.get_by_role("button", name="Sign In").click()
    expect(page.get_by_text("Hello — I am the Chief").last).to_be_visible()
    return page


def test_e2e_two_users_each_see_only_their_own_history(browser: Browser, tmp_path: Path) -> None:
    home = tmp_path / "auth"
    home.mkdir()
    add_user(home, "alice", "alice-password")
    add_user(home, "bob", "bob-password-1")
    srv = start_server(home, auth=True, env={"CHIEF_OFFLINE_LATENCY_MS": "0"})
    try:
        alice = login(browser, srv, "alice", "alice-password")
        send(alice, "alice asks: what is a transistor?")
        expect(board(alice)).to_have_attribute("data-run-status", "succeeded", timeout=30_000)
        alice.close()
        bob = login(browser, srv, "bob", "bob-password-1")
        send(bob, "bob asks about boats")
        expect(board(bob)).to_have_attribute("data-run-status", "succeeded", timeout=30_000)
        bob.reload()
        expect(bob.get_by_text("Hello — I am the Chief").last).to_be_visible()
        history = bob.locator("#thread-history")
        expect(history).to_contain_text("bob asks about boats")
        expect(history).not_to_contain_text("alice asks")
        shot(bob, "chat-history-bob")
        bob.close()
        alice = login(browser, srv, "alice", "alice-password")
        history = alice.locator("#thread-history")
        expect(history).to_contain_text("alice asks: what is a transistor?")
        expect(history).not_to_contain_text("bob asks")
        history.get_by_text("alice asks: what is a transistor?").click()  # reopen it: all of it is there
        expect(alice.get_by_text("Plan: answer").first).to_be_visible()
        expect(alice.locator('[data-plan-board]').last).to_have_attribute("data-run-status", "succeeded")
        expect(alice.locator('div[data-step-type="assistant_message"]').last).to_contain_text("general assistant")
        alice.locator("button#step-answer").click()  # a step's output is there as it was
        expect(alice.get_by_text("✅ succeeded · assistant").first).to_be_visible()
        shot(alice, "chat-history-alice-reopened")
        alice.close()
    finally:
        srv.stop()
