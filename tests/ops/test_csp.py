"""The Content-Security-Policy on Django's pages (issue #13, finding 8): every page sends a strict policy, and no
template or page carries the inline code such a policy refuses. The browser tests (tests/*/test_browser*.py,
tests/ops/test_production_serving.py) fail on any console error, so they also catch violations in Chromium."""

import re
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import Client

from billing.views.common import mix_bar_html

# Inline code a policy without 'unsafe-inline' refuses: <script> blocks, <style> blocks, style="" attributes,
# on...="" handlers, javascript: URLs.
INLINE_CODE = re.compile(
    r"<script(?![^>]*\bsrc=)[^>]*>|<style\b|\sstyle\s*=|\son[a-z]+\s*=|javascript:", re.I,
)
STRICT = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "frame-ancestors": "'none'",
}


def policy(response) -> dict[str, str]:
    header = response.headers.get("Content-Security-Policy")
    assert header, f"{response.request['PATH_INFO']} has no Content-Security-Policy"
    return {name: value for name, _, value in (part.strip().partition(" ") for part in header.split(";"))}


def template_files():
    roots = [Path(django_settings.BASE_DIR) / "templates"]
    return sorted(path for root in roots for path in root.rglob("*.html"))


@pytest.mark.parametrize("path", template_files(), ids=lambda p: str(p.relative_to(django_settings.BASE_DIR)))
def test_no_template_has_inline_code(path):
    found = INLINE_CODE.findall(path.read_text())
    assert not found, f"{path.name}: {found}"


def test_the_routing_mix_bar_is_drawn_without_inline_styles():
    html = mix_bar_html({"turns": 4, "stayed_turns": 2, "escalated_turns": 1, "max_turns": 1, "other_turns": 0})
    assert not INLINE_CODE.search(html)
    assert 'x="50.00%" width="25.00%"' in html


def _pages(alice, staff, tenant):
    """(client, path) for one page of each kind: anonymous forms, the tenant's pages, staff's, admin, API docs."""
    anonymous, member, admin_user = Client(), Client(), Client()
    member.force_login(alice)
    admin_user.force_login(staff)
    return [
        (anonymous, "/login/"), (anonymous, "/signup/"), (anonymous, "/password/reset/"),
        (anonymous, "/api/docs/"), (anonymous, "/admin/login/"), (anonymous, "/no-such-page/"),
        (member, "/"), (member, "/chat/"), (member, "/usage/"), (member, "/invoices/"), (member, "/team/"),
        (member, "/api-keys/"), (member, "/settings/"),
        (admin_user, "/staff/"), (admin_user, "/finance/"), (admin_user, "/admin/"),
        (admin_user, "/admin/tenants/tenant/"), (admin_user, f"/admin/tenants/tenant/{tenant.pk}/change/"),
        (admin_user, "/admin/tenants/user/add/"),
    ]


@pytest.fixture
def staff(db):
    from tests.factories import UserFactory

    return UserFactory(email="root@kiwiclaw.test", is_staff=True, is_superuser=True)


@pytest.mark.django_db
def test_every_kind_of_page_sends_a_strict_policy_and_no_inline_code(alice, staff, acme):
    for client, path in _pages(alice, staff, acme):
        response = client.get(path, follow=True)
        assert response.status_code in (200, 404), (path, response.status_code)
        directives = policy(response)
        for name, value in STRICT.items():
            assert directives.get(name) == value, (path, name, directives.get(name))
        assert not any("unsafe" in value for value in directives.values()), (path, directives)
        if "text/html" in response.headers.get("Content-Type", ""):
            body = response.content.decode()
            # Django's admin is not ours to rewrite; it too must render without inline code under the policy.
            found = INLINE_CODE.findall(body)
            assert not found, (path, found)


@pytest.mark.django_db
def test_the_api_docs_load_their_init_script_from_the_site():
    page = Client().get("/api/docs/").content.decode()
    scripts = re.findall(r'<script src="([^"]+)"', page)
    assert any("script" in src and src.startswith("/api/docs/") for src in scripts), scripts
    init = Client().get(next(src for src in scripts if src.startswith("/api/docs/")).replace("&amp;", "&"))
    assert init.status_code == 200 and "SwaggerUIBundle" in init.content.decode()
