from django.urls import path

from . import export, settings_views, sse, views

app_name = "conversations"

urlpatterns = [
    path("chat/", views.chat_home, name="home"),
    path("chat/sidebar/", views.sidebar, name="sidebar"),
    path("chat/new/", views.conversation_new, name="new"),
    path("chat/settings/", settings_views.workspace_chat_settings, name="chat_settings"),
    path("chat/<int:conversation_id>/", views.conversation_detail, name="detail"),
    path("chat/<int:conversation_id>/rename/", views.conversation_rename, name="rename"),
    path("chat/<int:conversation_id>/delete/", views.conversation_delete, name="delete"),
    path("chat/<int:conversation_id>/tier/", views.conversation_tier, name="tier"),
    path("chat/<int:conversation_id>/instructions/", settings_views.conversation_instructions, name="instructions"),
    path("chat/<int:conversation_id>/export.md", export.export_markdown, name="export_markdown"),
    path("chat/<int:conversation_id>/export.json", export.export_json, name="export_json"),
    path("chat/<int:conversation_id>/messages/", views.message_send, name="send"),
    path("chat/<int:conversation_id>/messages/<int:message_id>/stop/", views.message_stop, name="stop"),
    path("chat/<int:conversation_id>/messages/<int:message_id>/retry/", views.message_retry, name="retry"),
    path("chat/<int:conversation_id>/messages/<int:message_id>/edit/", views.message_edit, name="edit"),
    path("chat/<int:conversation_id>/messages/<int:message_id>/show/", views.message_version, name="version"),
    path("chat/<int:conversation_id>/messages/<int:message_id>/stream/", sse.message_stream, name="stream"),
    path("chat/<int:conversation_id>/messages/<int:message_id>/feedback/", views.message_feedback, name="feedback"),
    path("staff/routing/feedback/", views.staff_feedback_all_tenants, name="staff_feedback"),
]
