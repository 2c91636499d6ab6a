from django.urls import path

from . import views

urlpatterns = [
    path("settings/", views.workspace_settings, name="workspace_settings"),
    path("staff/routing/", views.staff_routing_all_tenants, name="staff_routing"),
]
