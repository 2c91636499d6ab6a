from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import include, path
from django.views.generic import RedirectView

from . import health, metrics

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    # The admin signs in through the site's login, which is throttled (tenants/throttle.py); admin's own form is not.
    path("admin/login/", RedirectView.as_view(pattern_name="login", query_string=True), name="admin-login"),
    path("admin/", admin.site.urls),
    path("v1/", include("proxy.urls")),
    path("api/", include("kiwiclaw.api_urls")),
    path("", include("tenants.urls")),
    path("", include("billing.urls")),
    path("", include("routing.urls")),
    path("", include("conversations.urls")),
]

# `make dev` serves through uvicorn, not runserver, so in debug the static files need a route of their own.
# staticfiles_urlpatterns() is empty when DEBUG is off: in production a proxy serves STATIC_ROOT.
urlpatterns += staticfiles_urlpatterns()
