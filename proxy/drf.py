"""REST API (/api/) authentication and the default permission, configured by dotted path in settings
(REST_FRAMEWORK) so the apps' rest.py modules need not import this layer.

A request is authenticated by an API key (`Authorization: Bearer kc-…`, the same cached lookup as /v1; the key
acts as the member who created it) or by the browser session (tenant from TenantMiddleware). Either way the
view sees `request.tenant`, `request.membership` and `request.user`.
"""

import redis
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, SessionAuthentication
from rest_framework.permissions import BasePermission

from infra.redis import redis_sync

from .auth import REVOKED_KEY, authenticate_key


def _revoked_elsewhere(key_id: int) -> bool:
    """The same cross-process revocation flag the /v1 rate-limit script checks."""
    try:
        return bool(redis_sync().exists(REVOKED_KEY.format(key_id)))
    except redis.RedisError:
        return False  # the cache TTL still bounds how long a revoked key works


class ApiKeyAuthentication(BaseAuthentication):
    keyword = "bearer"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if header[:7].lower() != "bearer ":
            return None
        identity = authenticate_key(header[7:].strip())
        if identity is None or _revoked_elsewhere(identity.key_id):
            raise exceptions.AuthenticationFailed("Incorrect or revoked API key.")
        # DRF's Request proxies attribute reads to the HttpRequest, so views read request.tenant either way.
        request._request.tenant = identity.tenant
        request._request.membership = identity.membership
        return identity.user, identity

    def authenticate_header(self, request):
        # Makes DRF answer 401 (not 403) to unauthenticated requests.
        return 'Bearer realm="api"'


class TenantSessionAuthentication(SessionAuthentication):
    """The browser session; the tenant comes from TenantMiddleware (the member's current tenant)."""


class IsTenantMember(BasePermission):
    """Authenticated, a member of the request's tenant, and that tenant active."""

    message = "You are not a member of an active tenant."

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        tenant = getattr(request, "tenant", None)
        if tenant is None:
            return False
        if not tenant.is_active:
            raise exceptions.PermissionDenied(f"The workspace {tenant.name} is suspended.")
        return True


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "proxy.drf.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "A KiwiClaw API key (kc-…)."}


class SessionScheme(OpenApiAuthenticationExtension):
    target_class = "proxy.drf.TenantSessionAuthentication"
    name = "session"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "cookie", "name": "sessionid"}
