"""One way for tests to drive the pages in a real headless Chromium.

    from tests.browser import screenshot, assert_accessible  # browser_pages: a fixture of tests/conftest.py

    def test_usage_fits_a_phone(browser_pages, alice):
        page = browser_pages.open(alice, "/usage/", width=375)
        screenshot(page, "usage")                  # artifacts/usage-375.png
        assert_accessible(page)                    # no serious or critical axe-core violation

What the `browser_pages` fixture gives every page it opens, so a test never has to ask:
- **Chromium at /usr/bin/chromium, or a failure.** A browser test that cannot run fails loudly (never skips):
  `make test` and `.ci/run` install Debian's `chromium` when it is missing.
- **A logged-in session without the login form.** The session cookie comes from django.test.Client's
  force_login, made with the test's own database connection (login itself is tested in tests/tenants).
- **No console error, no uncaught page error, no Content-Security-Policy violation**, asserted at teardown for
  every page opened. CSP violations are collected twice: from the `securitypolicyviolation` event (reported to
  Python as it fires, so a navigation loses none) and from Chromium's "Refused to ..." console lines. A test that
  provokes an error on purpose names it first: `browser_pages.allow(r"409 \\(Conflict\\)")`.
- **The page's server**: the shared WSGI live server (`server_url`, tests/conftest.py), unless the test passes
  `base_url=` (the chat's SSE needs uvicorn).

`assert_accessible` runs axe-core (bundled by the `axe-playwright-python` package: there is no npm at test time)
and fails on violations of serious or critical impact, listing each rule, its help text and the elements.

Playwright's sync API runs an event loop in the test's thread, and Django refuses ORM calls from a thread with a
running loop. While the fixture is live, DJANGO_ALLOW_ASYNC_UNSAFE is set so the test's own (plain sync) ORM
calls keep working; it is restored afterwards.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings as django_settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(django_settings.BASE_DIR) / "artifacts"
DESKTOP, PHONE = 1280, 375
HEIGHTS = {DESKTOP: 900, PHONE: 812}
BLOCKING_IMPACTS = ("serious", "critical")

# Runs in every document before the page's own scripts: each CSP violation is reported to Python at once.
_REPORT_CSP = """
document.addEventListener("securitypolicyviolation", (e) => {
  window.__kcCspViolation(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`);
});
"""


def launch_chromium(playwright):
    """The one Chromium launch of the suite. Fails (does not skip) when the browser is missing."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"no Chromium at {CHROMIUM}: browser tests need it (apt-get install chromium; make test does)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def session_cookie(user, url: str) -> dict:
    """A Playwright cookie for a session logged in as `user`, valid for `url`."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    cookie = client.cookies[django_settings.SESSION_COOKIE_NAME]
    return {"name": cookie.key, "value": cookie.value, "url": url}


class BrowserPages:
    """Opens pages and remembers what went wrong on them; `check()` fails the test if anything did."""

    def __init__(self, playwright, base_url_factory):
        self._playwright = playwright
        self._browser = None
        self._base_url_factory = base_url_factory
        self._allowed: list[re.Pattern] = []
        self.pages = []
        self.errors: list[str] = []
        self.csp_violations: list[str] = []

    @property
    def browser(self):
        if self._browser is None:
            self._browser = launch_chromium(self._playwright)
        return self._browser

    def allow(self, pattern: str) -> None:
        """Console errors matching `pattern` (a regex) are expected by this test, not failures."""
        self._allowed.append(re.compile(pattern))

    def open(self, user=None, path: str | None = None, *, width: int = DESKTOP, height: int | None = None,
             base_url: str | None = None, status: int = 200, **context_options):
        """A new page (its own browser context) at `width` px, logged in as `user` (None: anonymous); when
        `path` is given, navigated there and its status checked. `context_options` go to Playwright's
        new_context (e.g. has_touch=True, to tap)."""
        base_url = base_url or self._base_url_factory()
        context = self.browser.new_context(viewport={"width": width, "height": height or HEIGHTS.get(width, 900)},
                                           base_url=base_url, **context_options)
        if user is not None:
            context.add_cookies([session_cookie(user, base_url)])
        page = context.new_page()
        page.set_default_timeout(15_000)
        # A live server's first request imports the whole URLconf (the router's model included): on a busy
        # 2-core machine that alone has taken 13 s.
        page.set_default_navigation_timeout(45_000)
        page.expose_function("__kcCspViolation", lambda text, page=page: self.csp_violations.append(
            f"{page.url}: {text}"))
        page.add_init_script(_REPORT_CSP)
        page.on("console", lambda msg, page=page: self._console(page, msg))
        page.on("pageerror", lambda exc, page=page: self.errors.append(f"{page.url}: page error: {exc}"))
        self.pages.append(page)
        if path is not None:
            visit(page, path, status=status)
        return page

    def _console(self, page, msg) -> None:
        if msg.type != "error":
            return
        text = f"{page.url}: {msg.text}"
        if msg.text.startswith("Refused to"):  # Chromium's own wording for a CSP block
            self.csp_violations.append(text)
        elif not any(p.search(msg.text) for p in self._allowed):
            self.errors.append(text)

    def check(self) -> None:
        assert self.csp_violations == [], "Content-Security-Policy violations:\n" + "\n".join(self.csp_violations)
        assert self.errors == [], "console or page errors:\n" + "\n".join(self.errors)

    def close(self) -> None:
        if self._browser is not None:
            self._browser.close()


@contextmanager
def browser_session(base_url_factory):
    """Playwright and a lazily launched Chromium for one test: yields a BrowserPages (no check at the end)."""
    from playwright.sync_api import sync_playwright

    saved = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    manager = sync_playwright().start()
    pages = BrowserPages(manager, base_url_factory)
    try:
        yield pages
    finally:
        pages.close()
        manager.stop()
        if saved is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = saved


@pytest.fixture
def browser_pages(request):
    """A BrowserPages for this test; at teardown, no console error, page error or CSP violation on any page."""
    with browser_session(lambda: request.getfixturevalue("server_url")) as pages:
        yield pages
        pages.check()


def visit(page, path: str, *, status: int = 200):
    response = page.goto(path)
    assert response is not None and response.status == status, (path, response and response.status)
    return response


def overflow(page) -> int:
    """How far the page scrolls sideways (> 0: something is wider than the screen)."""
    return page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")


def screenshot(page, name: str, *, full_page: bool = True) -> Path:
    """Save the page as artifacts/<name>-<width>.png and return the path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}-{page.viewport_size['width']}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def axe_violations(page, *, impacts=BLOCKING_IMPACTS) -> list[dict]:
    """axe-core's violations on the page as it is now, of the given impacts: [{id, impact, help, targets}]."""
    from axe_playwright_python.base import AXE_SCRIPT

    # Evaluated through the DevTools protocol, which the page's CSP does not govern; the page gains no script.
    page.evaluate(AXE_SCRIPT)
    results = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"],
         "targets": [" ".join(map(str, node["target"])) for node in v["nodes"]]}
        for v in results["violations"] if v["impact"] in impacts
    ]


def format_violations(violations: list[dict]) -> str:
    return "\n".join(f"- {v['id']} ({v['impact']}): {v['help']}: {', '.join(v['targets'][:5])}" for v in violations)


def assert_accessible(page, *, known: tuple[str, ...] = ()) -> list[dict]:
    """No serious or critical axe-core violation on the page, except the rule ids in `known` (each one a
    violation recorded elsewhere, e.g. an xfail test naming it). Returns the known ones that were found."""
    violations = axe_violations(page)
    unexpected = [v for v in violations if v["id"] not in known]
    assert unexpected == [], f"axe-core violations on {page.url}:\n{format_violations(unexpected)}"
    return [v for v in violations if v["id"] in known]
