from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import include, path

from tenants.views import auth

from . import health, metrics

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    # Ahead of admin's own login view, which has no throttle (tenants/throttle.py).
    path("admin/login/", auth.AdminLoginView.as_view(), name="admin-login"),
    path("admin/", admin.site.urls),
    path("v1/", include("proxy.urls")),
    path("api/", include("kiwiclaw.api_urls")),
    path("", include("tenants.urls")),
    path("", include("billing.urls")),
    path("", include("alerts.urls")),
    path("", include("routing.urls")),
    path("", include("conversations.urls")),
]

# `make dev` serves through uvicorn, not runserver, so in debug the static files need a route of their own.
# staticfiles_urlpatterns() is empty when DEBUG is off: in production a proxy serves STATIC_ROOT.
urlpatterns += staticfiles_urlpatterns()
