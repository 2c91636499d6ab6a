"""The production web server as shipped (issue #13, finding 10): the Dockerfile's command, DEBUG off, serving
collectstatic's output. A real headless Chromium loads pages from it and finds the stylesheet and htmx under
hashed names with a year's cache, and no Content-Security-Policy violation. Fails, never skips, without
Chromium (tests/browser.py)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from django.conf import settings as django_settings

from tests.harness import http_ready, listening_port, start_process

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

BASE_DIR = Path(django_settings.BASE_DIR)
YEAR = 365 * 24 * 3600
HASHED = r"\.[0-9a-f]{12}\."  # ManifestStaticFilesStorage's name.<12 hex>.ext


def dockerfile_command() -> list[str]:
    match = re.search(r"^CMD (\[.*\])$", (BASE_DIR / "Dockerfile").read_text(), re.M)
    assert match, "the Dockerfile has no exec-form CMD"
    return json.loads(match.group(1))


def local_command(static_root: Path) -> list[str]:
    """The Dockerfile's command as it is, but for where it runs: loopback, port 0 (read back from the kernel),
    this checkout's STATIC_ROOT, and the server from this virtualenv."""
    command = dockerfile_command()
    where = {"--host": "127.0.0.1", "--port": "0", "--static-path-mount": str(static_root)}
    for i, arg in enumerate(command[:-1]):
        if arg in where:
            command[i + 1] = where[arg]
    command[0] = str(Path(sys.executable).parent / command[0])
    return command


@pytest.fixture
def production_env(tmp_path):
    """The environment docker-compose.yml gives the web service, pointed at the test database and Redis, with
    collectstatic run into a fresh STATIC_ROOT as the image build does. Plain HTTP on loopback: no HTTPS
    redirect (there is no TLS proxy in front here)."""
    db = django_settings.DATABASES["default"]
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "GRANIAN_"))}
    env.update({
        "DJANGO_DEBUG": "0",
        # The test's own key: the session the test makes carries a hash signed with it.
        "DJANGO_SECRET_KEY": django_settings.SECRET_KEY,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "DJANGO_SECURE_HSTS_SECONDS": "0",
        "DJANGO_STATIC_ROOT": str(tmp_path / "staticfiles"),
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": django_settings.REDIS_URL,
    })
    done = subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput"], cwd=BASE_DIR, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return env


@pytest.fixture
def production_server(production_env):
    with start_process(local_command(Path(production_env["DJANGO_STATIC_ROOT"])), name="production server",
                       env=production_env, port_from=listening_port, ready=http_ready("/login/", 200),
                       start_timeout=60) as server:
        yield server.url


def _open(browser_pages, server, path, errors, static_responses, user=None):
    """A page from the production server (tests/browser.py: console errors and CSP violations fail the test at
    teardown); here also every error response and every static file is recorded."""
    page = browser_pages.open(user, base_url=server)
    page.on("response", lambda r: "/static/" in r.url and static_responses.append(r))
    page.on("response", lambda r: r.status >= 400 and errors.append(f"{r.status} for {r.url}"))
    response = page.goto(path)
    assert response.status == 200, (path, response.status)
    return page, response


def test_the_production_command_serves_pages_with_their_css_and_htmx_and_no_csp_violation(
        production_server, browser_pages, alice):
    errors, static_responses = [], []

    # An anonymous page: the layout, its stylesheet and htmx.
    page, response = _open(browser_pages, production_server, "/login/", errors, static_responses)
    assert "script-src 'self'" in response.headers["content-security-policy"]
    stylesheet = page.eval_on_selector("link[rel=stylesheet]", "link => link.getAttribute('href')")
    assert re.fullmatch(rf"/static/css/app{HASHED}css", stylesheet), stylesheet
    htmx_src = page.eval_on_selector("script[src*='htmx']", "script => script.getAttribute('src')")
    assert re.fullmatch(rf"/static/django_htmx/htmx-2\.min{HASHED}js", htmx_src), htmx_src
    page.wait_for_function("() => window.htmx !== undefined")
    # app.css applied: its custom properties exist, and the skip link is moved off screen as it says.
    assert page.evaluate("getComputedStyle(document.documentElement).getPropertyValue('--accent')").strip()
    assert page.evaluate("getComputedStyle(document.querySelector('.skip-link')).position") == "absolute"
    # htmx configured for the policy: no injected indicator styles, no eval.
    assert page.evaluate("[htmx.config.includeIndicatorStyles, htmx.config.allowEval]") == [False, False]

    # A signed-in page with the chat's own stylesheet, scripts and the SSE extension.
    chat, _ = _open(browser_pages, production_server, "/chat/", errors, static_responses, user=alice)
    assert urlsplit(chat.url).path == "/chat/", chat.url
    assert chat.locator("link[href*='/static/css/chat.']").count() == 1
    chat.wait_for_function("() => window.htmx !== undefined")
    usage, _ = _open(browser_pages, production_server, "/usage/", errors, static_responses, user=alice)

    # The API's documentation (Swagger UI, drf-spectacular's sidecar files) renders under the same policy.
    docs, _ = _open(browser_pages, production_server, "/api/docs/", errors, static_responses)
    docs.wait_for_selector(".swagger-ui .information-container", state="attached")
    # Django's admin names the site's icon, so the browser asks for no /favicon.ico (which would be a 404).
    admin, _ = _open(browser_pages, production_server, "/admin/login/", errors, static_responses)

    for each in (page, chat, usage, docs, admin):
        each.wait_for_load_state("load")
    assert not browser_pages.csp_violations, browser_pages.csp_violations
    assert not errors, errors

    # Every static file came from the server, under a hashed name, cacheable for a year.
    assert static_responses
    for static in static_responses:
        assert static.status == 200, (static.url, static.status)
        assert re.search(HASHED, static.url), f"{static.url} is not a hashed name"
        cache = static.headers.get("cache-control", "")
        age = re.search(r"max-age=(\d+)", cache)
        assert age and int(age.group(1)) >= YEAR, (static.url, cache)
    css = httpx.get(f"{production_server}{stylesheet}", timeout=10)
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
