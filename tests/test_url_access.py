"""Who may open what, for every URL the URLconf serves: enumerated from the resolver, never a hand list.

Each route is classified once in ACCESS below; a route the URLconf serves without a class fails the test, so
a new page cannot arrive unexamined. Then, for every route:
- anonymous callers are sent to log in (pages) or refused (the APIs), except the public pages;
- a plain member of a tenant gets 403 from tenant-admin, staff and finance pages;
- every route that takes an object id answers another tenant's object exactly like a missing one (404), for
  GET and POST alike, to a tenant admin of the other tenant (who passes every role check), and changes nothing.
"""

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from billing.models import Invoice
from billing.months import month_start
from conversations import services as chat
from conversations.models import Message
from tenants.models import AuditEvent, Invite, Membership
from tests.factories import MembershipFactory, UserFactory, make_api_key

PUBLIC = "public"  # no login needed
PAGE = "page"  # any member of the current tenant
TENANT_ADMIN = "tenant_admin"  # the current tenant's admins
STAFF = "staff"  # platform admins
FINANCE = "finance"  # billing.view_finance
API = "api"  # /api/: an API key or the browser session
PROXY = "proxy"  # /v1: an API key
STREAM = "stream"  # the chat's SSE stream: its owner's session (an EventSource cannot follow a login redirect)
NOT_FOUND = "not_found"  # the JSON 404 catch-alls of /v1 and /api/
METRICS = "metrics"  # /metrics: staff sessions or the metrics token; 403 (never a login redirect) to the rest

ACCESS = {
    "healthz": PUBLIC, "metrics": METRICS, "login": PUBLIC, "logout": PUBLIC, "signup": PUBLIC, "password_reset": PUBLIC,
    "password_reset_complete": PUBLIC, "password_reset_confirm": PUBLIC, "invite_accept": PUBLIC,
    "static": PUBLIC, "api:schema": PUBLIC, "api:docs": PUBLIC,
    "password_change": PAGE, "password_change_done": PAGE, "home": PAGE, "tenant_switch": PAGE,
    "api_keys": PAGE, "api_key_create": PAGE, "api_key_rename": PAGE, "api_key_revoke": PAGE,
    "billing_usage": PAGE, "billing_invoices": PAGE, "billing_invoice": PAGE, "billing_invoice_csv": PAGE,
    "conversations:home": PAGE, "conversations:sidebar": PAGE, "conversations:new": PAGE,
    "conversations:detail": PAGE, "conversations:rename": PAGE, "conversations:delete": PAGE,
    "conversations:tier": PAGE, "conversations:send": PAGE, "conversations:stop": PAGE,
    "conversations:retry": PAGE, "conversations:stream": STREAM, "conversations:feedback": PAGE,
    "conversations:edit": PAGE, "conversations:version": PAGE,
    "conversations:instructions": PAGE, "conversations:chat_settings": TENANT_ADMIN,
    "conversations:export_markdown": PAGE, "conversations:export_json": PAGE,
    "team": TENANT_ADMIN, "team_invite_create": TENANT_ADMIN, "team_invite_revoke": TENANT_ADMIN,
    "team_member_role": TENANT_ADMIN, "team_member_remove": TENANT_ADMIN, "team_audit": TENANT_ADMIN,
    "team_audit_detail": TENANT_ADMIN, "workspace_settings": TENANT_ADMIN, "billing_usage_csv": TENANT_ADMIN,
    "api_key_limits": TENANT_ADMIN, "team_member_limits": TENANT_ADMIN,
    "alerts": TENANT_ADMIN, "alerts_secret_rotate": TENANT_ADMIN, "alerts_delivery": TENANT_ADMIN,
    "alerts_delivery_replay": TENANT_ADMIN,
    "staff_console": STAFF, "staff_tenant_plan": STAFF, "staff_tenant_status": STAFF, "staff_audit": STAFF,
    "staff_routing": STAFF, "conversations:staff_feedback": STAFF,
    "staff_plans": STAFF, "staff_plan_create": STAFF, "staff_plan_edit": STAFF,
    "finance_overview": FINANCE, "finance_overview_csv": FINANCE, "finance_trends": FINANCE, "finance_tenant": FINANCE,
    "finance_tenant_csv": FINANCE, "finance_invoices": FINANCE, "finance_invoice": FINANCE,
    "finance_invoice_csv": FINANCE, "finance_invoice_finalize": FINANCE, "finance_invoice_void": FINANCE,
    "finance_credit_note_create": FINANCE,
    "api:conversations": API, "api:conversation": API, "api:messages": API, "api:message": API,
    "api:usage": API, "api:invoices": API, "api:invoice": API, "api:rest": NOT_FOUND,
    "proxy:chat-completions": PROXY, "proxy:messages": PROXY, "proxy:models": PROXY, "proxy:rest": NOT_FOUND,
}
ROLES_BELOW = {TENANT_ADMIN, STAFF, FINANCE, METRICS}  # pages a plain member must be refused


def _routes():
    """(name, route, kwargs names) for every pattern, with the namespaces the URLconf gives them."""
    def walk(patterns, prefix, namespace):
        for p in patterns:
            if isinstance(p, URLResolver):
                ns = p.namespace or namespace
                yield from walk(p.url_patterns, prefix + str(p.pattern), ns)
            elif isinstance(p, URLPattern):
                route = prefix + str(p.pattern)
                if route.startswith("admin/"):
                    continue  # Django's admin has its own login and permission checks
                name = p.name or ("static" if "static/" in route else "rest")
                if name in ("rest",) and route.startswith("v1/"):
                    namespace_name = "proxy:rest"
                elif name == "rest":
                    namespace_name = "api:rest"
                else:
                    namespace_name = f"{namespace}:{name}" if namespace and name != "static" else name
                yield namespace_name, route, list(p.pattern.regex.groupindex)
    return list(walk(get_resolver().url_patterns, "", None))


ROUTES = _routes()


def _path(route: str, values: dict) -> str:
    path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(values[m.group(1)]), route)
    path = re.sub(r"\^?\(\?P<(\w+)>[^)]*\)\$?", lambda m: values.get(m.group(1), "anything"), path)
    return "/" + path.lstrip("^").rstrip("$")


def test_every_route_is_classified():
    names = {name for name, _, _ in ROUTES}
    unclassified = sorted(names - ACCESS.keys())
    assert not unclassified, f"classify these routes in ACCESS (tests/test_url_access.py): {unclassified}"
    assert len(ROUTES) > 50  # the walk really saw the URLconf


@pytest.fixture
def world(acme, alice, carol, globex):
    """acme's objects of every kind a route can name, and an admin of globex (the other tenant)."""
    conversation = chat.conversation_create(tenant=acme, owner=alice, title="acme secret")
    question = Message.objects.create(tenant=acme, conversation=conversation, role="user", content="q")
    answer = Message.objects.create(tenant=acme, conversation=conversation, role="assistant", content="a",
                                    parent=question, status="done", endpoint="kimi-k2.5", tier="auto")
    api_key, _ = make_api_key(tenant=acme, user=alice)
    invoice = Invoice.objects.create(tenant=acme, month=month_start(), plan=acme.plan, plan_name=acme.plan.name)
    invite = Invite.objects.create(tenant=acme, token_hash="x" * 64, created_by=alice,
                                   expires_at="2999-01-01T00:00:00Z")
    delivery = _alert_delivery(acme)
    outsider = UserFactory(email="gina@globex.test")
    MembershipFactory(user=outsider, tenant=globex, role="admin")
    return {
        "conversation_id": conversation.pk, "message_id": answer.pk, "api_key_id": api_key.pk,
        "invoice_id": invoice.pk, "invite_id": invite.pk,
        "membership_id": Membership.objects.get(user=carol, tenant=acme).pk,
        "event_id": AuditEvent.objects.filter(tenant=acme).latest("id").pk, "tenant_id": acme.pk,
        "uidb64": "MQ", "token": "x-y", "path": "css/app.css", "rest": "nothing-here",
        "outsider": outsider, "delivery_id": delivery.pk, "plan_id": acme.plan_id,
    }


def _alert_delivery(tenant):
    from alerts.models import AlertEvent, AlertSettings, WebhookDelivery

    AlertSettings.objects.create(tenant=tenant, webhook_url="https://example.test/hook", webhook_secret="whsec_x")
    event = AlertEvent.objects.create(tenant=tenant, month=month_start(), threshold=50, cap=1, spend=1)
    return WebhookDelivery.objects.create(tenant=tenant, event=event, url="https://example.test/hook", body="{}",
                                          status="failed")


def _is_login_redirect(response) -> bool:
    return response.status_code == 302 and "/login/" in response["Location"]


@pytest.mark.parametrize(("name", "route", "kwargs"), ROUTES, ids=[r[0] for r in ROUTES])
def test_anonymous_callers_are_sent_to_log_in_or_refused(client, world, name, route, kwargs):
    access = ACCESS[name]
    response = client.get(_path(route, world))
    if response.status_code == 405:  # a POST-only endpoint
        response = client.post(_path(route, world))
    if access == PUBLIC:
        assert response.status_code not in (401, 403)
        assert name == "logout" or not _is_login_redirect(response)  # logging out ends on the login page
    elif access == NOT_FOUND:
        assert response.status_code == 404
    elif access == STREAM:
        assert response.status_code in (401, 403, 404) or _is_login_redirect(response), response.status_code
    elif access in (API, PROXY):
        assert response.status_code in (401, 403), response.status_code
    elif access == METRICS:
        assert response.status_code == 403, response.status_code
    else:
        assert _is_login_redirect(response), (response.status_code, response.get("Location"))


@pytest.mark.parametrize(("name", "route", "kwargs"), [r for r in ROUTES if ACCESS.get(r[0]) in ROLES_BELOW],
                         ids=[r[0] for r in ROUTES if ACCESS.get(r[0]) in ROLES_BELOW])
def test_a_plain_member_is_refused_admin_staff_and_finance_pages(client, world, carol, name, route, kwargs):
    client.force_login(carol)
    for method in (client.get, client.post):
        assert method(_path(route, world)).status_code == 403


TENANT_OWNED = [r for r in ROUTES if ACCESS.get(r[0]) in (PAGE, TENANT_ADMIN, API, STREAM)
                and set(r[2]) & {"conversation_id", "message_id", "api_key_id", "invoice_id", "invite_id",
                                 "membership_id", "event_id", "delivery_id"}]


@pytest.mark.parametrize(("name", "route", "kwargs"), TENANT_OWNED, ids=[r[0] for r in TENANT_OWNED])
def test_another_tenants_object_answers_like_a_missing_one(client, world, name, route, kwargs):
    client.force_login(world["outsider"])
    before = (Message.objects.filter(tenant_id=world["tenant_id"]).count(),
              list(Message.objects.filter(pk=world["message_id"]).values_list("content", "feedback", "status")))
    missing = {key: (10**9 if key.endswith("_id") else value) for key, value in world.items()}
    answered = []
    for method in (client.get, client.post):
        theirs, nothing = method(_path(route, world)), method(_path(route, missing))
        assert theirs.status_code == nothing.status_code, (method.__name__, theirs.status_code, nothing.status_code)
        if theirs.status_code != 405:  # a method the route does not take answers 405 whatever the id
            answered.append(theirs.status_code)
    assert answered and set(answered) == {404}, answered
    after = (Message.objects.filter(tenant_id=world["tenant_id"]).count(),
             list(Message.objects.filter(pk=world["message_id"]).values_list("content", "feedback", "status")))
    assert after == before
