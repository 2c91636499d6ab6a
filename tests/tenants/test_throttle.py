"""Login and password reset are throttled per account and per client address, in Redis (tenants/throttle.py):
refused with a 429 page in the site's look, logged, and audited in the account's tenants."""

import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.contrib.auth import SESSION_KEY as AUTH_SESSION_KEY
from django.core.cache import cache
from django.test import Client
from django_ratelimit.core import get_usage

from tenants import throttle
from tenants.models import AuditEvent
from tests.factories import DEMO_PASSWORD

pytestmark = pytest.mark.django_db

ADDRESS = "203.0.113.9"


# The throttles count in fixed windows (django-ratelimit), whose edges fall at a fixed moment for a given account
# or address: a burst of attempts straddling one is counted half in each window. The tests start clear of it.
WINDOW_EDGE_MARGIN = 5.0


@pytest.fixture(autouse=True)
def _clear_of_window_edges():
    from django_ratelimit.core import _get_window

    values = ["alice@acme.test", "carol@acme.test", "admin@kiwiclaw.test", "nobody@example.test", ADDRESS,
              "127.0.0.1"]
    while True:
        left = min(_get_window(value, period) - time.time() for value in values for period in (900, 3600))
        if left >= WINDOW_EDGE_MARGIN:
            return
        time.sleep(max(left, 0) + 0.5)


@pytest.fixture(autouse=True)
def _rates(settings):
    settings.AUTH_THROTTLE_LOGIN_ACCOUNT = "5/15m"
    settings.AUTH_THROTTLE_LOGIN_ADDRESS = "50/15m"
    settings.AUTH_THROTTLE_RESET_ACCOUNT = "3/h"
    settings.AUTH_THROTTLE_RESET_ADDRESS = "20/h"


def _login(client, email, password):
    return client.post("/login/", {"username": email, "password": password})


def test_forty_wrong_passwords_then_the_right_one_is_refused(alice):
    client = Client(REMOTE_ADDR=ADDRESS)
    answers = [_login(client, "alice@acme.test", f"guess-{i}").status_code for i in range(40)]
    assert answers[:5] == [200] * 5  # the form says "do not match"
    assert answers[5:] == [429] * 35

    response = _login(client, "Alice@Acme.test", DEMO_PASSWORD)  # any spelling of the address is one account
    assert response.status_code == 429
    assert AUTH_SESSION_KEY not in client.session
    page = response.content.decode()
    assert "Too many attempts" in page and "for this account" in page
    assert '<link rel="stylesheet"' in page  # the site's own page, not a bare error
    assert 0 < int(response["Retry-After"]) <= 15 * 60


def test_a_throttled_account_is_refused_from_another_address_too(alice):
    for i in range(5):
        _login(Client(REMOTE_ADDR=f"198.51.100.{i}"), "alice@acme.test", "wrong")
    response = _login(Client(REMOTE_ADDR="192.0.2.77"), "alice@acme.test", DEMO_PASSWORD)
    assert response.status_code == 429


def test_one_address_guessing_many_accounts_is_throttled(settings, alice, carol):
    settings.AUTH_THROTTLE_LOGIN_ADDRESS = "3/15m"
    client = Client(REMOTE_ADDR=ADDRESS)
    assert [_login(client, f"user{i}@acme.test", "wrong").status_code for i in range(3)] == [200] * 3
    response = _login(client, "carol@acme.test", DEMO_PASSWORD)
    assert response.status_code == 429 and "from your network address" in response.content.decode()
    assert _login(Client(REMOTE_ADDR="192.0.2.1"), "carol@acme.test", DEMO_PASSWORD).status_code == 302


def test_successful_logins_give_their_attempt_back(alice):
    for _ in range(8):
        assert _login(Client(REMOTE_ADDR=ADDRESS), "alice@acme.test", DEMO_PASSWORD).status_code == 302
    client = Client(REMOTE_ADDR=ADDRESS)
    assert [_login(client, "alice@acme.test", "wrong").status_code for _ in range(6)] == [200] * 5 + [429]


def test_the_slot_given_back_is_the_one_django_ratelimit_counted(rf, settings, alice):
    """The refund uses django-ratelimit's key function (tenants/throttle.py): it must name the counter that
    `get_usage` counted in."""
    request = rf.post("/login/", {"username": "alice@acme.test"}, REMOTE_ADDR=ADDRESS)
    attempt = throttle.throttle_attempt(request, what=throttle.LOGIN, account="alice@acme.test")

    def count(scope, key):
        rate = getattr(settings, f"AUTH_THROTTLE_LOGIN_{scope.upper()}")
        return get_usage(request, group=f"kiwiclaw.login.{scope}", key=key, rate=rate)["count"]

    account_key = lambda _g, _r: "alice@acme.test"  # noqa: E731
    assert count("account", account_key) == 1 and count("address", "ip") == 1
    attempt.forgive()
    assert count("account", account_key) == 0 and count("address", "ip") == 0


def test_a_refusal_is_audited_once_per_window_in_the_accounts_tenant(alice, acme, caplog):
    client = Client(REMOTE_ADDR=ADDRESS)
    with caplog.at_level(logging.WARNING, logger="tenants.auth"):
        for _ in range(9):
            _login(client, "alice@acme.test", "wrong")
    events = AuditEvent.objects.filter(action="auth.login_throttled")
    assert [(e.tenant_id, e.target_id) for e in events] == [(acme.pk, str(alice.pk))]
    assert events[0].after["address"] == ADDRESS and events[0].after["limit"] == "account"
    assert caplog.text.count("Throttled login for 'alice@acme.test'") == 4  # every refusal is logged


def test_an_unknown_account_is_throttled_and_only_logged(db, caplog):
    client = Client(REMOTE_ADDR=ADDRESS)
    with caplog.at_level(logging.WARNING, logger="tenants.auth"):
        answers = [_login(client, "nobody@nowhere.test", "x").status_code for _ in range(6)]
    assert answers[-1] == 429
    assert "Throttled login for 'nobody@nowhere.test'" in caplog.text
    assert not AuditEvent.objects.filter(action="auth.login_throttled").exists()


def test_password_reset_is_throttled_per_account(alice, acme, settings, caplog):
    settings.DEBUG = False
    client = Client(REMOTE_ADDR=ADDRESS)
    with caplog.at_level(logging.INFO, logger="tenants.auth"):
        answers = [client.post("/password/reset/", {"email": "alice@acme.test"}).status_code for _ in range(5)]
    assert answers == [200, 200, 200, 429, 429]
    assert caplog.text.count("Password reset link for alice@acme.test") == 3
    assert AuditEvent.objects.filter(action="auth.password_reset_throttled", tenant=acme).count() == 1
    assert "Too many attempts" in client.post("/password/reset/", {"email": "alice@acme.test"}).content.decode()


# --- across processes: two real web servers sharing Redis ---


def _post_login(base_url, email, password):
    """A browser's login through a real server: the form's CSRF token, then the POST."""
    with httpx.Client(base_url=base_url, timeout=20) as http:
        page = http.get("/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)[1]
        return http.post("/login/", data={"csrfmiddlewaretoken": token, "username": email, "password": password},
                         headers={"Cookie": f"csrftoken={page.cookies['csrftoken']}", "Referer": base_url})


@pytest.fixture
def two_servers(transactional_db, fake_provider_server):
    from tests.proxy.conftest import ProxyServer

    extra = {"DJANGO_DEBUG": "1", "AUTH_THROTTLE_LOGIN_ACCOUNT": "5/15m"}
    servers = [ProxyServer(extra_env=extra), ProxyServer(extra_env=extra)]
    yield servers
    for server in servers:
        server.stop()
    # Counters the servers wrote under the default prefix (they do not see this test's settings).
    keys = [k for k in cache._cache.get_client().scan_iter(f"{cache.make_key('rl:')}*")]
    if keys:
        cache._cache.get_client().delete(*keys)


@pytest.mark.django_db(transaction=True)
def test_the_limit_holds_across_processes_and_under_concurrent_attempts(two_servers, alice):
    urls = [server.url for server in two_servers]
    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(lambda i: _post_login(urls[i % 2], "alice@acme.test", f"guess-{i}").status_code,
                                range(24)))
    # Each attempt takes its slot before its password is checked: twenty-four at once get five guesses.
    assert sorted(answers) == [200] * 5 + [429] * 19
    assert _post_login(urls[0], "alice@acme.test", DEMO_PASSWORD).status_code == 429
    assert _post_login(urls[1], "alice@acme.test", DEMO_PASSWORD).status_code == 429


def test_the_admin_login_form_is_throttled_too(platform_admin):
    client = Client(REMOTE_ADDR=ADDRESS)
    page = client.get("/admin/login/?next=/admin/")
    assert page.status_code == 200 and b'name="password"' in page.content
    answers = [client.post("/admin/login/?next=/admin/", {"username": platform_admin.email, "password": f"x{i}"}
                           ).status_code for i in range(7)]
    assert answers == [200] * 5 + [429] * 2
    refused = client.post("/admin/login/?next=/admin/", {"username": platform_admin.email, "password": DEMO_PASSWORD})
    assert refused.status_code == 429


def test_the_admin_login_signs_staff_in(platform_admin):
    client = Client(REMOTE_ADDR=ADDRESS)
    response = client.post("/admin/login/?next=/admin/", {"username": platform_admin.email,
                                                           "password": DEMO_PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
