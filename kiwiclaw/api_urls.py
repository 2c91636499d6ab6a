"""The REST API under /api/ (DRF): dashboard data for API keys and browser sessions, and its OpenAPI schema.

The schema also describes the /v1 proxy endpoints (added by proxy.openapi.add_proxy_paths).
"""

from django.conf import settings
from django.http import JsonResponse
from django.urls import path, re_path
from django.utils.csp import CSP
from django.views.decorators.csp import csp_override
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.permissions import AllowAny

from billing import rest as billing_rest
from conversations import rest as conversations_rest

app_name = "api"


@csrf_exempt  # answers every method; there is nothing to protect
def not_found(request, rest=""):
    """Unknown /api/ paths answer in the API's JSON error format, not with Django's HTML 404 page."""
    return JsonResponse({"detail": "Not found."}, status=404)


urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(permission_classes=[AllowAny], authentication_classes=[]),
         name="schema"),
    # The split view serves its init script from ?script instead of inline, so the page works under the site's
    # CSP; Swagger UI draws its icons as data: images, the one thing this page's policy adds.
    path("docs/", csp_override({**settings.SECURE_CSP, "img-src": [CSP.SELF, "data:"]})(
        SpectacularSwaggerSplitView.as_view(url_name="api:schema", template_name="api/swagger_ui.html",
                                            permission_classes=[AllowAny], authentication_classes=[])),
         name="docs"),
    path("conversations/", conversations_rest.ConversationListView.as_view(), name="conversations"),
    path("conversations/<int:conversation_id>/", conversations_rest.ConversationDetailView.as_view(),
         name="conversation"),
    path("conversations/<int:conversation_id>/messages/", conversations_rest.MessageListView.as_view(),
         name="messages"),
    path("messages/<int:message_id>/", conversations_rest.MessageDetailView.as_view(), name="message"),
    path("usage/", billing_rest.UsageSummaryView.as_view(), name="usage"),
    path("invoices/", billing_rest.InvoiceListView.as_view(), name="invoices"),
    path("invoices/<int:invoice_id>/", billing_rest.InvoiceDetailView.as_view(), name="invoice"),
    re_path(r"^(?P<rest>.*)$", not_found),
]
