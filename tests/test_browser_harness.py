"""tests/browser.py catches what it promises to: a CSP violation, a console error, an axe-core violation. Each
check is shown failing on a page made to fail it, so a green browser test means the check ran."""

import time

import pytest

from tests.browser import assert_accessible, axe_violations, browser_session, launch_chromium, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def pages(server_url):
    """A BrowserPages whose teardown check the test calls itself (to see it fail)."""
    with browser_session(lambda: server_url) as pages:
        yield pages


def test_an_inline_script_is_reported_as_a_csp_violation(pages, alice):
    page = pages.open(alice, "/")
    page.evaluate("() => { const s = document.createElement('script'); s.textContent = '1'; "
                  "document.body.append(s); }")
    # The event is queued, then reported to Python through a binding: poll (each call lets Playwright deliver it).
    deadline = time.monotonic() + 10
    while not pages.csp_violations and time.monotonic() < deadline:
        page.evaluate("() => new Promise(resolve => requestAnimationFrame(() => resolve()))")
    assert "script-src" in pages.csp_violations[0]
    with pytest.raises(AssertionError, match="Content-Security-Policy"):
        pages.check()


def test_a_console_error_fails_unless_allowed(pages, alice):
    page = pages.open(alice, "/")
    page.evaluate("() => console.error('something broke')")
    with pytest.raises(AssertionError, match="something broke"):
        pages.check()
    pages.errors.clear()
    pages.allow("expected breakage")
    page.evaluate("() => console.error('an expected breakage')")
    pages.check()


def test_axe_reports_a_serious_violation(pages, alice):
    page = pages.open(alice, "/")
    page.evaluate("() => { const i = document.createElement('img'); i.src = '/static/favicon.svg'; "
                  "document.querySelector('main').append(i); }")
    assert "image-alt" in [v["id"] for v in axe_violations(page)]
    with pytest.raises(AssertionError, match="image-alt"):
        assert_accessible(page)
    assert [v["id"] for v in assert_accessible(page, known=("image-alt",))] == ["image-alt"]


def test_screenshots_are_named_by_page_and_width(pages, alice):
    page = pages.open(alice, "/", width=375)
    path = screenshot(page, "harness-home")
    assert path.name == "harness-home-375.png" and path.stat().st_size > 1000


def test_a_missing_chromium_fails_the_test(monkeypatch):
    import tests.browser

    monkeypatch.setattr(tests.browser, "CHROMIUM", "/nonexistent/chromium")
    with pytest.raises(pytest.fail.Exception, match="no Chromium"):
        launch_chromium(None)
