import logging

import pytest
from django.contrib.auth import SESSION_KEY as AUTH_SESSION_KEY
from django.test import Client

from tenants.middleware import SESSION_KEY
from tenants.models import AuditEvent, Membership, Tenant, User

pytestmark = pytest.mark.django_db

SIGNUP = {"email": "dana@initech.test", "name": "Dana", "password": "a-long-unusual-passphrase",
          "tenant_name": "Initech", "tenant_slug": "initech"}


def _counts():
    return User.objects.count(), Tenant.objects.count(), Membership.objects.count(), AuditEvent.objects.count()


def test_login_with_email_any_case_lands_in_the_chat(alice):
    client = Client()
    response = client.post("/login/", {"username": "Alice@ACME.test", "password": "kiwiclaw-demo"})
    assert response.status_code == 302 and response["Location"] == "/chat/"
    assert client.session[AUTH_SESSION_KEY] == str(alice.pk)


def test_login_with_a_wrong_password_says_so(alice):
    response = Client().post("/login/", {"username": "alice@acme.test", "password": "nope"})
    assert response.status_code == 200
    assert "do not match an account" in response.content.decode()


def test_logout_is_a_post(alice, login):
    client = login(alice)
    assert client.get("/logout/").status_code == 405
    client.post("/logout/")
    assert AUTH_SESSION_KEY not in client.session


def test_sign_up_creates_a_free_tenant_with_the_signer_as_admin(db):
    client = Client()
    response = client.post("/signup/", SIGNUP)
    assert response.status_code == 302
    user = User.objects.get(email="dana@initech.test")
    tenant = Tenant.objects.get(slug="initech")
    assert tenant.plan.slug == "free" and tenant.name == "Initech"
    assert Membership.objects.get(user=user, tenant=tenant).role == "admin"
    assert client.session[SESSION_KEY] == tenant.pk
    assert AuditEvent.objects.filter(tenant=tenant, action="tenant.create").count() == 1


@pytest.mark.parametrize(
    ("change", "field_error"),
    [
        ({"email": "alice@acme.test"}, "already exists"),
        ({"email": "ALICE@acme.test"}, "already exists"),
        ({"email": "not-an-email"}, "Enter a valid email address"),
        ({"tenant_slug": "Bad Slug!"}, "lowercase letters, digits or hyphens"),
        ({"tenant_slug": "-edge-"}, "lowercase letters, digits or hyphens"),
        ({"tenant_slug": "acme"}, "is taken"),
        ({"password": "123"}, "too short"),
        ({"tenant_name": ""}, "This field is required"),
    ],
)
def test_bad_sign_up_shows_a_clear_error_and_saves_nothing(alice, change, field_error):
    before = _counts()
    response = Client().post("/signup/", {**SIGNUP, **change})
    assert response.status_code == 400
    assert field_error in response.content.decode()
    assert _counts() == before


def test_sign_up_rejected_by_the_service_after_the_form_passed_saves_nothing(alice):
    # The slug is well-formed, so the form passes; the service finds it taken only after checking the email.
    before = _counts()
    response = Client().post("/signup/", {**SIGNUP, "tenant_slug": "acme"})
    assert response.status_code == 400
    assert _counts() == before


def test_password_change(alice, login):
    client = login(alice)
    response = client.post("/password/change/", {"old_password": "kiwiclaw-demo",
                                                 "new_password1": "another-long-passphrase",
                                                 "new_password2": "another-long-passphrase"})
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password("another-long-passphrase")


def test_password_reset_link_is_shown_in_debug_and_works(alice, settings, caplog):
    settings.DEBUG = True
    client = Client()
    with caplog.at_level(logging.INFO, logger="tenants.auth"):
        response = client.post("/password/reset/", {"email": "alice@acme.test"})
    page = response.content.decode()
    assert "data-reset-link" in page
    link = page.split("data-reset-link")[1].split(">", 1)[1].split("</code>")[0]
    assert link in caplog.text
    path = link.replace("http://testserver", "")
    form_page = client.get(path, follow=True)
    assert "Choose a new password" in form_page.content.decode()
    done = client.post(form_page.redirect_chain[-1][0], {"new_password1": "fresh-long-passphrase",
                                                         "new_password2": "fresh-long-passphrase"})
    assert done.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password("fresh-long-passphrase")


def test_password_reset_link_is_only_logged_outside_debug(alice, settings, caplog):
    settings.DEBUG = False
    with caplog.at_level(logging.INFO, logger="tenants.auth"):
        response = Client().post("/password/reset/", {"email": "alice@acme.test"})
    assert "/password/reset/" in caplog.text and "alice@acme.test" in caplog.text
    assert "data-reset-link" not in response.content.decode()
    assert "server log" in response.content.decode()


def test_password_reset_for_an_unknown_address_answers_alike_and_logs_nothing(db, settings, caplog):
    settings.DEBUG = False
    with caplog.at_level(logging.INFO, logger="tenants.auth"):
        response = Client().post("/password/reset/", {"email": "nobody@nowhere.test"})
    assert response.status_code == 200 and "server log" in response.content.decode()
    assert "Password reset link" not in caplog.text
