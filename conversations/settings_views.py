"""Instructions pages: a conversation's own (any member, their conversation) and the workspace's default (its
admins, /chat/settings/, linked from the workspace settings page). Thin: parse, call conversations.instructions,
render."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from tenants.access import tenant_admin_required

from . import instructions
from .views import TEMPLATE, _conversation, _tenant

SETTINGS_TEMPLATE = "conversations/chat_settings.html"


@login_required
@require_POST
def conversation_instructions(request, conversation_id):
    conversation = _conversation(request, conversation_id)
    context = {"conversation": conversation}
    try:
        instructions.conversation_instructions_set(conversation=conversation, text=request.POST.get("instructions"))
        context["saved"] = True
    except instructions.InstructionsRefused as exc:
        context["error"] = str(exc)
        context["draft"] = request.POST.get("instructions", "")
    if request.htmx:
        return render(request, f"{TEMPLATE}#instructions", context, status=422 if "error" in context else 200)
    if "error" in context:  # without htmx the refusal still reaches the person, on the page they go back to
        messages.error(request, context["error"])
    return redirect(conversation)


@tenant_admin_required
@require_http_methods(["GET", "POST"])
def workspace_chat_settings(request):
    tenant = _tenant(request)
    context = {"nav_section": "settings", "max_chars": instructions.MAX_INSTRUCTIONS_CHARS}
    if request.method == "POST":
        try:
            instructions.workspace_instructions_set(tenant=tenant, text=request.POST.get("default_instructions"))
            context["saved"] = True
        except instructions.InstructionsRefused as exc:
            context["error"] = str(exc)
            context["text"] = request.POST.get("default_instructions", "")
    context.setdefault("text", instructions.workspace_instructions(tenant=tenant))
    return render(request, SETTINGS_TEMPLATE, context, status=422 if "error" in context else 200)
