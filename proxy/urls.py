from django.urls import path, re_path

from . import views

app_name = "proxy"

urlpatterns = [
    path("chat/completions", views.chat_completions, name="chat-completions"),
    path("messages", views.messages, name="messages"),
    path("models", views.models, name="models"),
    re_path(r"^(?P<rest>.*)$", views.not_found),
]
