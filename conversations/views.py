"""Chat pages and HTMX endpoints. Thin: parse input, call one selector or service, render.

Every view looks the conversation (and message) up through selectors that take the tenant and the user, so
another member's or another tenant's id gives the same 404 as a missing one. The SSE stream lives in
`conversations.sse`.
"""

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from tenants.access import platform_admin_required
from tenants.models import TIER_MAX

from . import feedback, selectors, services
from .models import Conversation, Message
from .search import message_search
from .sidebar import page_of as sidebar_page_of

TEMPLATE = "conversations/chat.html"
STAFF_FEEDBACK_TEMPLATE = "conversations/staff_feedback.html"


def _tenant(request):
    if getattr(request, "tenant", None) is None:
        raise Http404("No workspace.")
    return request.tenant


def _conversation(request, conversation_id) -> Conversation:
    try:
        return selectors.conversation_get(tenant=_tenant(request), user=request.user, conversation_id=conversation_id)
    except Conversation.DoesNotExist:
        raise Http404("No such conversation.") from None


def _message(request, conversation_id, message_id) -> Message:
    try:
        return selectors.message_get(
            tenant=_tenant(request), user=request.user, message_id=message_id, conversation_id=conversation_id
        )
    except Message.DoesNotExist:
        raise Http404("No such message.") from None


def _page_context(request, conversation: Conversation | None) -> dict:
    tenant = _tenant(request)
    search = request.GET.get("q", "")
    try:
        page = int(request.GET.get("page", 1))
    except ValueError:
        page = 1
    context = {
        "sidebar": sidebar_page_of(selectors.conversation_list(tenant=tenant, user=request.user, search=search),
                                   page),
        "search": search,
        "hits": message_search(tenant=tenant, user=request.user, query=search) if search.strip() else [],
        "conversation": conversation,
        "max_allowed": tenant.plan.allows_tier(TIER_MAX),
        "plan": tenant.plan,
        "max_chars": services.MAX_MESSAGE_CHARS,
    }
    if conversation is not None:
        chat_messages = list(selectors.message_list(tenant=tenant, user=request.user, conversation=conversation))
        context["turns"] = selectors.turns_from(chat_messages)
        context["running_cost"] = sum((m.billed for m in chat_messages), start=0)  # every version is billed
    return context


def _refusal(request, exc: services.ChatRefused, target: str) -> HttpResponse:
    """A refused action: 422 with the reason (409 for a turn asked for while one runs: one answer at a time).
    HTMX swaps it into the form's error slot (see static/js/chat.js)."""
    status = 409 if isinstance(exc, services.TurnInProgress) else 422
    response = render(request, f"{TEMPLATE}#error", {"error": str(exc)}, status=status)
    response["HX-Retarget"] = target
    response["HX-Reswap"] = "innerHTML"
    return response


@login_required
@require_GET
def chat_home(request):
    return render(request, TEMPLATE, _page_context(request, None))


@login_required
@require_GET
def sidebar(request):
    """The sidebar's conversation list, for the search box; with `page`, the entries "Show more" adds."""
    fragment = "sidebar-more" if request.GET.get("page") else "sidebar-list"
    return render(request, f"{TEMPLATE}#{fragment}", _page_context(request, None))


@login_required
@require_POST
def conversation_new(request):
    """The new chat's first message: creates the conversation with it and opens it (the answer streams there)."""
    try:
        answer = services.conversation_start(tenant=_tenant(request), owner=request.user,
                                             tier=request.POST.get("tier") or "auto", text=request.POST.get("text"))
    except services.ChatRefused as exc:
        return _refusal(request, exc, "#composer-error")
    url = answer.conversation.get_absolute_url()
    if request.htmx:
        return HttpResponseClientRedirect(url)
    return redirect(url)


@login_required
@require_GET
def conversation_detail(request, conversation_id):
    conversation = _conversation(request, conversation_id)
    return render(request, TEMPLATE, _page_context(request, conversation))


@login_required
@require_POST
def conversation_rename(request, conversation_id):
    conversation = _conversation(request, conversation_id)
    from_list = request.POST.get("from") == "list"
    try:
        services.conversation_rename(conversation=conversation, title=request.POST.get("title", ""))
    except services.ChatRefused as exc:
        return _refusal(request, exc, f"#chat-list-error-{conversation.pk}" if from_list else "#header-error")
    if request.htmx:
        # From the list: the list's entry, and the header's title out of band when it is the open conversation.
        oob = from_list and request.POST.get("current") == "1"
        return render(request, f"{TEMPLATE}#title", {"conversation": conversation, "oob": oob})
    return redirect(conversation)


@login_required
@require_POST
def conversation_delete(request, conversation_id):
    conversation = _conversation(request, conversation_id)
    services.conversation_delete(conversation=conversation)
    if request.htmx and request.POST.get("from") == "list" and request.POST.get("current") != "1":
        return HttpResponse("")  # another conversation than the open one: its entry leaves the list
    if request.htmx:
        return HttpResponseClientRedirect("/chat/")
    return redirect("conversations:home")


@login_required
@require_POST
def conversation_tier(request, conversation_id):
    conversation = _conversation(request, conversation_id)
    try:
        services.conversation_set_tier(conversation=conversation, tier=request.POST.get("tier", ""))
    except services.ChatRefused as exc:
        return _refusal(request, exc, "#tier-error")
    context = {"conversation": conversation, "max_allowed": _tenant(request).plan.allows_tier(TIER_MAX),
               "plan": _tenant(request).plan}
    if request.htmx:
        return render(request, f"{TEMPLATE}#tier-switch", context)
    return redirect(conversation)


@login_required
@require_POST
def message_send(request, conversation_id):
    conversation = _conversation(request, conversation_id)
    try:
        answer = services.message_send(conversation=conversation, author=request.user, text=request.POST.get("text"))
    except services.ChatRefused as exc:
        return _refusal(request, exc, "#composer-error")
    if request.htmx:
        turn = selectors.Turn(slot=answer.parent.slot_id, question=answer.parent, answer=answer, versions=[answer])
        return render(request, f"{TEMPLATE}#turn", {"conversation": conversation, "t": turn})
    return redirect(conversation)


@login_required
@require_POST
def message_retry(request, conversation_id, message_id):
    message = _message(request, conversation_id, message_id)
    try:
        answer = services.message_retry(message=message, author=request.user)
    except services.ChatRefused as exc:
        return _refusal(request, exc, f"#msg-{message.pk}-error")
    return _turn_response(request, answer)


@login_required
@require_POST
def message_edit(request, conversation_id, message_id):
    """An edited question, asked again in the same turn: the turn comes back showing the new version."""
    question = _message(request, conversation_id, message_id)
    try:
        answer = services.message_edit(question=question, author=request.user, text=request.POST.get("text"))
    except services.ChatRefused as exc:
        return _refusal(request, exc, f"#msg-{question.pk}-error")
    return _turn_response(request, answer)


@login_required
@require_POST
def message_version(request, conversation_id, message_id):
    """‹ / ›: show this answer version of its turn."""
    answer = _message(request, conversation_id, message_id)
    try:
        services.version_select(answer=answer)
    except services.ChatRefused as exc:
        return HttpResponseBadRequest(str(exc))
    return _turn_response(request, answer)


def _turn_response(request, message: Message) -> HttpResponse:
    if not request.htmx:
        return redirect(message.conversation)
    turn = selectors.turn_get(tenant=_tenant(request), user=request.user, message=message)
    return render(request, f"{TEMPLATE}#turnblock", {"conversation": message.conversation, "t": turn})


@login_required
@require_POST
def message_stop(request, conversation_id, message_id):
    message = _message(request, conversation_id, message_id)
    try:
        services.message_stop(message=message)
    except services.ChatRefused as exc:
        return _refusal(request, exc, f"#msg-{message.pk}-error")
    if request.htmx:
        return HttpResponse(status=204)
    return redirect(message.conversation)


@login_required
@require_POST
def message_feedback(request, conversation_id, message_id):
    """Thumbs up, down or clear on an answer; HTMX gets the buttons back with the pressed state. Someone
    else's message is a 404 like a missing one; a bad value or a message that cannot be rated is a 400."""
    message = _message(request, conversation_id, message_id)
    raw = request.POST.get("value", "")
    if raw not in feedback.FEEDBACK_VALUES:
        return HttpResponseBadRequest("Rate an answer up or down, or clear the rating.")
    try:
        feedback.message_feedback_set(message=message, value=feedback.FEEDBACK_VALUES[raw])
    except feedback.FeedbackRefused as exc:
        return HttpResponseBadRequest(str(exc))
    if request.htmx:
        return render(request, f"{TEMPLATE}#feedback", {"m": message})
    return redirect(f"{message.conversation.get_absolute_url()}#msg-{message.pk}")


@platform_admin_required
@require_GET
def staff_feedback_all_tenants(request):
    """Answer satisfaction across all tenants, per endpoint and per smart Auto decision: a page of its own, and
    the fragment /staff/routing/ loads (routing cannot import conversations, so the fragment is served here)."""
    context = {
        "by_endpoint": selectors.feedback_by_endpoint_all_tenants(),
        "by_decision": selectors.feedback_by_decision_all_tenants(),
    }
    template = f"{STAFF_FEEDBACK_TEMPLATE}#satisfaction" if request.htmx else STAFF_FEEDBACK_TEMPLATE
    return render(request, template, context)
