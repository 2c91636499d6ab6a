"""The REST API under /api/ (DRF): dashboard data for API keys and browser sessions, and its OpenAPI schema.

The schema also describes the /v1 proxy endpoints (added by routing.proxy.openapi.add_proxy_paths).
"""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny

from billing import rest as billing_rest
from conversations import rest as conversations_rest

app_name = "api"

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(permission_classes=[AllowAny], authentication_classes=[]),
         name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema", permission_classes=[AllowAny],
                                                 authentication_classes=[]), name="docs"),
    path("conversations/", conversations_rest.ConversationListView.as_view(), name="conversations"),
    path("conversations/<int:conversation_id>/", conversations_rest.ConversationDetailView.as_view(),
         name="conversation"),
    path("conversations/<int:conversation_id>/messages/", conversations_rest.MessageListView.as_view(),
         name="messages"),
    path("messages/<int:message_id>/", conversations_rest.MessageDetailView.as_view(), name="message"),
    path("usage/", billing_rest.UsageSummaryView.as_view(), name="usage"),
    path("invoices/", billing_rest.InvoiceListView.as_view(), name="invoices"),
    path("invoices/<int:invoice_id>/", billing_rest.InvoiceDetailView.as_view(), name="invoice"),
]
