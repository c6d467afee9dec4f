"""End to end in headless Chromium: search, Refresh, the reading appears; the operator sees three lanes."""

import os
import re
import shutil
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connections

from tests.factories import make_city
from tools.harness import ROOT

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
# Flags for a closed network, as root, with no GPU (see the machine notes).
NO_VALUE = "\u2013"  # the dashboard's en dash for "no reading yet"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def browser_page(monkeypatch):
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs Debian's chromium package")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread; the ORM calls the
    # test makes between browser steps are still plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.set_default_timeout(20_000)
        # Whatever the Content-Security-Policy blocks, Chromium reports on the console.
        page.csp_violations = []
        page.on("console", lambda message: "Content Security Policy" in message.text
                and page.csp_violations.append(f"{page.url}: {message.text}"))
        try:
            yield page
        finally:
            # While Playwright's loop runs, Django's context-local connection handler
            # gives this thread a connection of its own: close it here, inside that
            # context, or it outlives the test and holds the test database open.
            connections.close_all()
            context.close()
            browser.close()


def test_dashboard_refresh_and_operations_in_a_real_browser(live, sim, live_server, browser_page):
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser_page
    paris = make_city("Paris", 48.8566, 2.3522, population=2_100_000)
    lyon = make_city("Lyon", 45.75, 4.85, population=500_000)

    page.goto(f"{live_server.url}/")
    assert page.locator("#cities tbody tr").count() == 2
    page.fill("input[name=q]", "Paris")
    page.click("form[role=search] button[type=submit]")
    page.wait_for_url("**q=Paris**")
    rows = page.locator("#cities tbody tr")
    assert rows.count() == 1
    row = page.locator(f"tr[data-city-id='{paris.pk}']")
    assert row.locator(".temperature").inner_text() == NO_VALUE

    row.locator("button.refresh").click()
    row.locator(".state", has_text="SUCCESS").wait_for()
    temperature = row.locator(".temperature").inner_text()
    assert temperature != NO_VALUE
    assert float(temperature) == paris.readings.get().temperature
    # How long the person waited, and how long the task itself ran.
    assert re.fullmatch(r"SUCCESS · \d+\.\d s \(ran \d+\.\d s\)", row.locator(".state").inner_text())
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    # A fetch that fails for good ends the polling with the reason, not a spinner.
    page.goto(f"{live_server.url}/?q=Lyon")
    sim.script("bad_value")
    failing = page.locator(f"tr[data-city-id='{lyon.pk}']")
    failing.locator("button.refresh").click()
    failing.locator(".state", has_text="FAILURE").wait_for()
    assert "InvalidReadingError" in failing.locator(".state").inner_text()
    assert failing.locator(".temperature").inner_text() == NO_VALUE

    User.objects.create_user("operator", password="correct horse battery staple", is_staff=True)
    page.goto(f"{live_server.url}/ops/")
    page.fill("input[name=username]", "operator")
    page.fill("input[name=password]", "correct horse battery staple")
    page.click("input[type=submit]")
    page.locator("#lanes").wait_for()
    lanes = page.locator("section.lane")
    assert sorted(lanes.nth(i).get_attribute("data-lane") for i in range(lanes.count())) == [
        "bulk", "interactive", "maintenance"]
    for i in range(lanes.count()):
        assert int(lanes.nth(i).locator(".consumers").inner_text()) >= 1
    page.screenshot(path=str(ARTIFACTS / "ops.png"), full_page=True)

    # The admin (where schedules are edited) and the API docs render styled, offline:
    # each page's own stylesheet arrived and holds rules.
    for path, sheet, ready in (("/admin/", "admin/css/base", "#site-name"),
                               ("/api/docs", "ninja/swagger-ui", ".swagger-ui .info .title")):
        page.goto(f"{live_server.url}{path}")
        page.locator(ready).wait_for()
        sheets = page.evaluate(
            "() => [...document.styleSheets].filter(s => s.href).map(s => ({href: s.href, rules: s.cssRules.length}))")
        assert any(sheet in s["href"] and s["rules"] > 0 for s in sheets), (path, sheets)
        page.screenshot(path=str(ARTIFACTS / f"{path.strip('/').replace('/', '-')}.png"), full_page=True)
    # Every page above ran under its enforced Content-Security-Policy, and nothing was blocked.
    assert page.csp_violations == []
