"""Secrets and help (issue #15, item 13): one-time secrets (an API key, an invite link) have Copy buttons; the API
keys page shows a curl and an OpenAI SDK example naming this server's own /v1, and links the API reference.
The examples are run as shown, against a real server (uvicorn, the fake provider behind it); the Copy buttons
are pressed in Chromium and the clipboard read back."""

import html
import os
import re
import subprocess
import sys

import httpx
import pytest
from django.conf import settings

from tests.browser import DESKTOP, PHONE, overflow, screenshot, session_cookie
from tests.harness import http_ready, listening_port, start_process

pytestmark = pytest.mark.django_db


def _example(page: str, name: str) -> str:
    block = re.search(rf'<pre id="example-{name}"[^>]*><code>(.*?)</code></pre>', page, re.S)
    assert block, f"no {name} example"
    return html.unescape(block.group(1))


# --- What the page says ---------------------------------------------------------------------------------------

def test_the_examples_name_this_servers_v1_and_the_reference(alice, login, settings):
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "127.0.0.1"]  # with DEBUG off only the test client's host
    response = login(alice).get("/api-keys/", HTTP_HOST="127.0.0.1:8000")
    assert response.status_code == 200
    page = response.content.decode()
    curl, python = _example(page, "curl"), _example(page, "python")
    assert "curl http://127.0.0.1:8000/v1/chat/completions" in curl
    assert 'Authorization: Bearer $KIWICLAW_API_KEY' in curl
    assert 'base_url="http://127.0.0.1:8000/v1"' in python and 'os.environ["KIWICLAW_API_KEY"]' in python
    assert page.count('href="/api/docs/"') >= 1
    # No key was just made: the example names a placeholder, and no secret is anywhere on the page.
    assert curl.startswith("export KIWICLAW_API_KEY=kc-...  #")


def test_a_new_keys_examples_carry_its_secret_once(alice, login):
    client = login(alice)
    page = client.post("/api-keys/new/", {"name": "robot"}).content.decode()
    secret = page.split('<code id="new-secret">')[1].split("</code>")[0]
    assert _example(page, "curl").startswith(f"export KIWICLAW_API_KEY={secret}\n")
    assert 'data-copy="#new-secret"' in page
    assert secret not in client.get("/api-keys/").content.decode()


def test_one_time_secrets_have_copy_buttons(alice, login):
    page = login(alice).post("/team/invites/", {"role": "member", "email": ""}).content.decode()
    assert '<code id="new-invite-link">' in page and 'data-copy="#new-invite-link"' in page


# --- The examples work, as shown ------------------------------------------------------------------------------

@pytest.fixture
def web_server(fake_provider, budget_redis_clear):
    """uvicorn serving the project (pages and the raw /v1 entry) on the test database, the fake provider behind."""
    db = settings.DATABASES["default"]
    env = {**os.environ, "DATABASE_URL": f"postgres://{db.get('USER') or 'postgres'}@{db.get('HOST') or '127.0.0.1'}"
                                         f":{db.get('PORT') or 5432}/{db['NAME']}",
           # The same secret key as this process: the session made here must verify there.
           "REDIS_URL": settings.REDIS_URL, "DJANGO_SECRET_KEY": settings.SECRET_KEY, "DJANGO_DEBUG": "1",
           "DJANGO_ALLOWED_HOSTS": "127.0.0.1", "LOG_LEVEL": "WARNING"}
    env.pop("DJANGO_TEST_DATABASE", None)
    with start_process([sys.executable, "-m", "uvicorn", "kiwiclaw.asgi:application", "--host", "127.0.0.1",
                        "--port", "0", "--lifespan", "off", "--no-access-log"],
                       name="web (API help)", env=env, port_from=listening_port,
                       ready=http_ready("/login/", 200), start_timeout=60) as server:
        yield server.url


@pytest.fixture
def budget_redis_clear(redis_client):
    """Budgets and rate limits start from nothing (the server shares this Redis database)."""
    return redis_client


@pytest.mark.django_db(transaction=True)
def test_the_curl_and_sdk_examples_answer_as_shown(web_server, alice):
    cookie = session_cookie(alice, web_server)
    with httpx.Client(base_url=web_server, cookies={cookie["name"]: cookie["value"]}, timeout=30) as browser:
        listing = browser.get("/api-keys/")
        assert listing.status_code == 200, listing.status_code
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', listing.text).group(1)
        created = browser.post("/api-keys/new/", data={"name": "from the docs", "csrfmiddlewaretoken": token})
    assert created.status_code == 200
    curl, python = _example(created.text, "curl"), _example(created.text, "python")
    assert f"curl {web_server}/v1/chat/completions" in curl

    ran = subprocess.run(["bash", "-c", curl + " --silent --show-error --fail-with-body"], capture_output=True,
                         text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr + ran.stdout
    answer = httpx.Response(200, content=ran.stdout).json()
    assert answer["object"] == "chat.completion" and answer["choices"][0]["message"]["content"]

    secret = curl.split("\n", 1)[0].removeprefix("export KIWICLAW_API_KEY=")
    ran = subprocess.run([sys.executable, "-c", python], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "KIWICLAW_API_KEY": secret})
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == answer["choices"][0]["message"]["content"].strip()


# --- In the browser -------------------------------------------------------------------------------------------

CLIPBOARD = {"permissions": ["clipboard-read", "clipboard-write"]}


def _clipboard(page) -> str:
    return page.evaluate("() => navigator.clipboard.readText()")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_copy_buttons_put_the_key_and_the_examples_on_the_clipboard(browser_pages, alice, width):
    page = browser_pages.open(alice, "/api-keys/", width=width, **CLIPBOARD)
    page.fill("#keys-panel input[name=name]", "copied key")
    page.click("#keys-panel form[hx-post$='/api-keys/new/'] button")
    secret = page.locator("#new-secret").inner_text()
    button = page.locator("button[data-copy='#new-secret']")
    button.click()
    page.wait_for_function("() => document.querySelector(\"button[data-copy='#new-secret']\").textContent === 'Copied'")
    assert _clipboard(page) == secret
    page.click("button[data-copy='#example-curl']")
    page.wait_for_function("() => document.querySelector(\"button[data-copy='#example-curl']\").textContent === 'Copied'")
    assert _clipboard(page).startswith(f"export KIWICLAW_API_KEY={secret}\ncurl ")
    assert page.locator("[data-api-help] a[href='/api/docs/']").is_visible()
    assert overflow(page) <= 0  # the examples scroll inside their own boxes
    screenshot(page, "api-keys-help")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_invite_link_copies(browser_pages, alice):
    page = browser_pages.open(alice, "/team/", width=PHONE, **CLIPBOARD)
    page.click("#team-panel form[hx-post$='/team/invites/'] button[type=submit]")
    link = page.locator("#new-invite-link").inner_text()
    assert "/invite/" in link
    page.click("button[data-copy='#new-invite-link']")
    page.wait_for_function(
        "() => document.querySelector(\"button[data-copy='#new-invite-link']\").textContent === 'Copied'")
    assert _clipboard(page) == link
    screenshot(page, "team-invite-copied")
