from django.contrib import admin
from django.urls import include, path

from . import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("", include("tenants.urls")),
    path("", include("billing.urls")),
    path("", include("routing.urls")),
    path("", include("conversations.urls")),
]
