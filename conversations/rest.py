"""REST API for conversations and messages (/api/conversations/...), for API keys and browser sessions alike.

Views are thin: they read through conversations.selectors (tenant and user always given, so another
member's or another tenant's id answers 404 like a missing one) and write through conversations.services.
Sending a message goes through `message_send`, which queues the turn on Celery exactly as the chat UI does;
the client then polls `GET /api/messages/<id>/` until `status` is done, failed or cancelled.
"""

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from tenants.models import TIER_CHOICES

from . import selectors, services
from .models import Conversation, Message


class ChatErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


class ConversationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Conversation
        fields = ["id", "title", "tier", "created_at", "updated_at"]
        read_only_fields = fields


class ConversationCreateSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    tier = serializers.ChoiceField(choices=TIER_CHOICES, required=False, default="auto")


class MessageSerializer(serializers.ModelSerializer):
    conversation = serializers.IntegerField(source="conversation_id", read_only=True)
    parent = serializers.IntegerField(source="parent_id", read_only=True, allow_null=True)
    version_of = serializers.IntegerField(source="version_of_id", read_only=True, allow_null=True,
                                          help_text="On an edited question: the turn's first question.")
    cost = serializers.DecimalField(max_digits=20, decimal_places=10, read_only=True,
                                    help_text="Provider cost in USD.")
    billed = serializers.DecimalField(max_digits=20, decimal_places=10, read_only=True,
                                      help_text="Billed amount in USD.")
    tier = serializers.CharField(read_only=True, help_text="auto or max; empty on the user's own messages.")

    class Meta:
        model = Message
        fields = ["id", "conversation", "parent", "version_of", "role", "content", "status", "tier", "endpoint", "provider",
                  "upstream_model", "fallback_count", "finish_reason", "input_tokens", "output_tokens",
                  "cache_read_tokens", "cache_write_tokens", "output_estimated", "cost", "billed", "error",
                  "created_at", "finished_at"]
        read_only_fields = fields


class MessageSendSerializer(serializers.Serializer):
    text = serializers.CharField(max_length=services.MAX_MESSAGE_CHARS, trim_whitespace=True)


def _paginate(view, request, queryset, serializer_class):
    paginator = view.pagination_class()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)


COMMON_ERRORS = {
    401: OpenApiResponse(ChatErrorSerializer, description="No or an invalid API key / session."),
    403: OpenApiResponse(ChatErrorSerializer, description="Not a member of an active workspace."),
}
NOT_FOUND = {404: OpenApiResponse(ChatErrorSerializer, description="No such object in your workspace.")}
BAD_REQUEST = {400: OpenApiResponse(description="Invalid input: field name → list of messages.",
                                    response=inline_serializer("ValidationErrors", {
                                        "detail": serializers.CharField(required=False)}))}


class ConversationListView(APIView):
    """Your conversations in the current workspace, most recently active first."""

    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(operation_id="conversations_list", responses={200: ConversationSerializer(many=True),
                                                                 **COMMON_ERRORS})
    def get(self, request):
        qs = selectors.conversation_list(tenant=request.tenant, user=request.user)
        return _paginate(self, request, qs, ConversationSerializer)

    @extend_schema(operation_id="conversations_create", request=ConversationCreateSerializer,
                   responses={201: ConversationSerializer, **BAD_REQUEST, **COMMON_ERRORS})
    def post(self, request):
        data = ConversationCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        conversation = services.conversation_create(tenant=request.tenant, owner=request.user,
                                                    tier=data.validated_data["tier"],
                                                    title=data.validated_data["title"])
        return Response(ConversationSerializer(conversation).data, status=status.HTTP_201_CREATED)


def _conversation(request, conversation_id) -> Conversation:
    return get_object_or_404(selectors.conversation_list(tenant=request.tenant, user=request.user),
                             pk=conversation_id)


class ConversationDetailView(APIView):
    @extend_schema(operation_id="conversations_retrieve",
                   responses={200: ConversationSerializer, **COMMON_ERRORS, **NOT_FOUND})
    def get(self, request, conversation_id: int):
        return Response(ConversationSerializer(_conversation(request, conversation_id)).data)


class MessageListView(APIView):
    """A conversation's messages in reading order; POST sends a message (the answer is queued)."""

    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(operation_id="conversations_messages_list",
                   responses={200: MessageSerializer(many=True), **COMMON_ERRORS, **NOT_FOUND})
    def get(self, request, conversation_id: int):
        conversation = _conversation(request, conversation_id)
        qs = selectors.message_list(tenant=request.tenant, user=request.user, conversation=conversation)
        return _paginate(self, request, qs, MessageSerializer)

    @extend_schema(
        operation_id="conversations_messages_send", request=MessageSendSerializer,
        responses={202: OpenApiResponse(MessageSerializer, description="The queued assistant message; poll "
                                                                       "GET /api/messages/{id}/ for the answer."),
                   **BAD_REQUEST, **COMMON_ERRORS, **NOT_FOUND,
                   409: OpenApiResponse(ChatErrorSerializer, description="Refused: an answer in this "
                                                                     "conversation is still being written (one at a "
                                                                     "time), tier not in the plan, budget exhausted, "
                                                                     "workspace suspended.")},
    )
    def post(self, request, conversation_id: int):
        conversation = _conversation(request, conversation_id)
        data = MessageSendSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            answer = services.message_send(conversation=conversation, author=request.user,
                                           text=data.validated_data["text"])
        except services.ChatRefused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(MessageSerializer(answer).data, status=status.HTTP_202_ACCEPTED)


class MessageDetailView(APIView):
    @extend_schema(operation_id="messages_retrieve",
                   responses={200: MessageSerializer, **COMMON_ERRORS, **NOT_FOUND})
    def get(self, request, message_id: int):
        try:
            message = selectors.message_get(tenant=request.tenant, user=request.user, message_id=message_id)
        except Message.DoesNotExist:
            return Response({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
        return Response(MessageSerializer(message).data)
