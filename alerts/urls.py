from django.urls import path

from . import views

urlpatterns = [
    path("alerts/", views.alerts_view, name="alerts"),
    path("alerts/secret/", views.alerts_secret_rotate_view, name="alerts_secret_rotate"),
    path("alerts/deliveries/<int:delivery_id>/", views.alerts_delivery_view, name="alerts_delivery"),
    path("alerts/deliveries/<int:delivery_id>/replay/", views.alerts_delivery_replay_view,
         name="alerts_delivery_replay"),
]
