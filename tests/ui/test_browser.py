"""The status page in a real browser: Playwright driving Debian's chromium.

Outside CI a machine without /usr/bin/chromium skips these with one line; in CI
(CI=true) a missing browser fails them. Every page visited is written as a screenshot
to $CHANOPS_TEST_ARTIFACTS/ui/ (or the test's tmp directory).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.helpers import DaemonProcess, write_atomic
from ui.conftest import UI_PASSWORD, XSS, World, artefacts_dir

CHROMIUM = Path("/usr/bin/chromium")
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing: CI must install Debian's chromium package")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); CI runs these")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    return artefacts_dir(tmp_path)


def no_dialogs(page: Any) -> list[str]:
    """Collect every alert/confirm the page opens (an executed `<script>` would)."""
    opened: list[str] = []

    def record(dialog: Any) -> None:
        opened.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", record)
    return opened


def test_click_through_overview_list_connection_plan(
    browser: Any, world: World, shots: Path
) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(world.base + "/ui/")
    expect(page.locator("#health strong")).to_have_text("Authorisation needed")
    expect(page.locator("#live-state")).to_have_text("live")
    page.screenshot(path=str(shots / "overview.png"), full_page=True)

    page.get_by_role("link", name="sfcc 1").click()  # a driver count: the filtered list
    page.wait_for_url("**/ui/connections?driver=sfcc")
    rows = page.locator("table.list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("sfcc-eu")
    page.screenshot(path=str(shots / "connections.png"), full_page=True)

    page.get_by_role("link", name="sfcc-eu").click()
    page.wait_for_url("**/ui/connections/sfcc-eu")
    expect(page.locator("h1")).to_contain_text("sfcc-eu")
    fields = page.locator("table.fields")
    expect(fields).to_contain_text("(sensitive value)")
    expect(page.locator("tr.f-ignored")).not_to_have_count(0)  # priceBooks: ignored
    expect(page.locator("dl.facts")).to_contain_text("sfcc-eu.yaml:")
    page.screenshot(path=str(shots / "connection.png"), full_page=True)

    page.get_by_role("link", name="Plan").click()
    page.wait_for_url("**/ui/plan")
    expect(page.locator("pre.plan")).to_contain_text("AwaitingAuthorization")
    page.screenshot(path=str(shots / "plan.png"), full_page=True)

    # A deep link opens the same page on its own.
    page.goto(world.base + "/ui/connections/shopware-de")
    expect(page.locator("h1")).to_contain_text("shopware-de")
    page.close()
    # Nothing came from anywhere but the daemon: templates, style and script ship in
    # the package (and the CSP would refuse anything else).
    assert any(u.endswith("/ui/static/ui.css") for u in requested)
    assert any(u.endswith("/ui/static/ui.js") for u in requested)
    assert [u for u in requested if not u.startswith(world.base + "/ui/")] == []


def test_a_phone_sees_the_page_without_sideways_scrolling(
    browser: Any, world: World, shots: Path
) -> None:
    page = browser.new_page(viewport=PHONE, is_mobile=True, has_touch=True)
    for path, name in (("/ui/", "phone-overview"), ("/ui/connections", "phone-connections")):
        page.goto(world.base + path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], (path, width)  # wide tables scroll in their box
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    page.close()


def test_a_manifest_edit_appears_live(browser: Any, world: World, shots: Path) -> None:
    from playwright.sync_api import expect

    page = browser.new_page()
    page.goto(world.base + "/ui/connections/magento-b2b")
    expect(page.locator("#live-state")).to_have_text("live")
    before = page.evaluate("performance.getEntriesByType('navigation').length")
    edited = world.root / "magento-b2b.yaml"
    text = edited.read_text(encoding="utf-8")
    write_atomic(edited, text.replace("displayName: Magento B2B", "displayName: Magento Live 42"))
    # Polled, not timed: the daemon writes the platform, the stream says so, the page
    # fetches itself; the figure for "within a second" is in benchmarks/ui.py.
    expect(page.locator("#fields")).to_contain_text("Magento Live 42", timeout=15_000)
    assert page.evaluate("performance.getEntriesByType('navigation').length") == before
    assert page.url.endswith("/ui/connections/magento-b2b")  # no reload, no navigation
    page.screenshot(path=str(shots / "live-edit.png"), full_page=True)
    page.close()


def test_without_javascript_every_page_is_complete(browser: Any, world: World, shots: Path) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(world.base + "/ui/")
    expect(page.locator("#live-state")).to_have_text("static")  # no script ran
    expect(page.locator("#attention")).to_contain_text("amazon-de")
    page.goto(world.base + "/ui/connections")
    page.locator("input[name=q]").fill("amazon")
    page.locator("select[name=enabled]").select_option("false")
    page.get_by_role("button", name="Filter").click()  # a plain GET form
    page.wait_for_url("**/ui/connections?q=amazon*")
    rows = page.locator("table.list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("amazon-fr")
    page.get_by_role("link", name="platform id").click()  # sorting is a link too
    page.wait_for_url(lambda u: "sort=id" in u and "q=amazon" in u)
    page.goto(world.base + "/ui/plan")
    expect(page.locator("pre.plan")).to_be_visible()
    page.screenshot(path=str(shots / "no-js-plan.png"), full_page=True)
    context.close()


def test_script_in_a_display_name_and_a_label_shows_as_text(
    browser: Any, world: World, shots: Path
) -> None:
    from playwright.sync_api import expect

    page = browser.new_page()
    opened = no_dialogs(page)
    page.goto(world.base + "/ui/connections/xss-shop")
    expect(page.locator("dl.facts")).to_contain_text(XSS)  # the display name, as text
    expect(page.locator("dl.facts .label")).to_have_text(f"owner={XSS}")
    page.goto(world.base + "/ui/connections?label=owner")
    expect(page.locator("table.list")).to_contain_text(XSS)
    assert page.locator("script:not([src])").count() == 0
    page.screenshot(path=str(shots / "escaping.png"), full_page=True)
    assert opened == []
    page.close()


@pytest.mark.slow  # the quick form: test_http.py reads the same pages and the stream
def test_no_secret_in_any_page_the_browser_shows(browser: Any, world: World) -> None:
    page = browser.new_page()
    page.goto(world.base + "/ui/connections?size=500")
    links = page.eval_on_selector_all("table.list a", "els => els.map(e => e.getAttribute('href'))")
    seen = {}
    for path in ["/ui/", "/ui/plan", *links]:
        page.goto(world.base + path, wait_until="domcontentloaded")
        seen[path] = page.content()
    assert len(seen) > 10
    for secret in world.secrets:
        assert not [p for p, html in seen.items() if secret in html], secret[:8]
    page.close()


def test_off_loopback_the_browser_needs_the_password(
    browser: Any, guarded: DaemonProcess, shots: Path
) -> None:
    base = f"http://127.0.0.1:{guarded.port}"
    from playwright.sync_api import Error

    anonymous = browser.new_context()
    # Headless chromium has nobody to ask for the password: it gives up on the 401.
    with pytest.raises(Error, match="ERR_INVALID_AUTH_CREDENTIALS"):
        anonymous.new_page().goto(base + "/ui/")
    assert anonymous.request.get(base + "/ui/").status == 401
    anonymous.close()
    wrong = browser.new_context(http_credentials={"username": "ops", "password": "guess"})
    refused = wrong.new_page().goto(base + "/ui/")
    assert refused is not None and refused.status == 401
    wrong.close()
    signed_in = browser.new_context(http_credentials={"username": "ops", "password": UI_PASSWORD})
    page = signed_in.new_page()
    response = page.goto(base + "/ui/")
    assert response is not None and response.status == 200
    page.screenshot(path=str(shots / "signed-in.png"))
    signed_in.close()
