"""Conversations and their messages.

A conversation is private to its owner inside a tenant: every read goes through `conversations.selectors`,
which take both the tenant and the user, so another member's conversation answers like a missing one.
Messages carry the tenant too (every tenant-owned row does), which keeps the isolation filter one join away.
"""

import uuid

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.db import models
from django.urls import reverse

from tenants.models import TIER_AUTO, TIER_CHOICES, Tenant

DEFAULT_TITLE = "New chat"
TIER_LABELS = dict(TIER_CHOICES)

# Smart Auto's decision on an answer, as the footer and the staff satisfaction table name it.
ROUTE_ESCALATED = "escalated"
ROUTE_STAYED = "stayed"
ROUTE_UNSCORED = "unscored"
ROUTE_DECISION_LABELS = {
    ROUTE_ESCALATED: "Escalated to MAX",
    ROUTE_STAYED: "Stayed on Auto",
    ROUTE_UNSCORED: "Not scored",
}
# The text search configuration of message search (stemming, stop words) and of its index.
SEARCH_CONFIG = "english"
# The constraint behind "one answer at a time" (conversations.sql.insert_turn maps its violation to TurnRunning).
ONE_RUNNING_TURN = "msg_one_running_turn"
FEEDBACK_UP = 1
FEEDBACK_DOWN = -1


class Conversation(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="conversations")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, default=DEFAULT_TITLE)
    tier = models.CharField(max_length=10, choices=TIER_CHOICES, default=TIER_AUTO)
    # The conversation's own instructions, sent as the system prompt after the workspace's default ones.
    instructions = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [models.Index(fields=["tenant", "owner", "-updated_at"], name="conv_owner_recent")]

    def __str__(self):
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("conversations:detail", args=[self.pk])


class Message(models.Model):
    ROLE_USER = "user"
    ROLE_ASSISTANT = "assistant"
    ROLE_CHOICES = [(ROLE_USER, "User"), (ROLE_ASSISTANT, "Assistant")]

    STATUS_QUEUED = "queued"
    STATUS_STREAMING = "streaming"
    STATUS_DONE = "done"
    STATUS_FAILED = "failed"
    STATUS_CANCELLED = "cancelled"
    STATUS_CHOICES = [
        (STATUS_QUEUED, "Queued"),
        (STATUS_STREAMING, "Streaming"),
        (STATUS_DONE, "Done"),
        (STATUS_FAILED, "Failed"),
        (STATUS_CANCELLED, "Cancelled"),
    ]
    FINISHED = (STATUS_DONE, STATUS_FAILED, STATUS_CANCELLED)

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=10, choices=ROLE_CHOICES)
    content = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=STATUS_CHOICES, default=STATUS_DONE)
    # The user message an assistant message answers, and the earlier answer a retry replaces on screen.
    parent = models.ForeignKey("self", on_delete=models.CASCADE, null=True, blank=True, related_name="answers")
    retry_of = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    # Versions (‹ 2/3 › on screen). A turn is a slot: its first question and every version of it. An edited
    # question is a new user message whose `version_of` is the slot's first question; retries and edits add
    # answers to the slot. The slot's first question keeps the answer on screen (`selected_answer`; empty: the
    # latest), which is also the version the model sees in later turns' history.
    version_of = models.ForeignKey("self", on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    selected_answer = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    # Routing facts, filled when the turn ends.
    tier = models.CharField(max_length=10, choices=TIER_CHOICES, blank=True)
    endpoint = models.CharField(max_length=100, blank=True, help_text="Catalog endpoint slug that answered.")
    provider = models.CharField(max_length=50, blank=True)
    upstream_model = models.CharField(max_length=100, blank=True)
    attempts = models.JSONField(default=list, blank=True, help_text="The routing decision log.")
    fallback_count = models.PositiveSmallIntegerField(default=0)
    routing_reason = models.CharField(max_length=200, blank=True)
    finish_reason = models.CharField(max_length=20, blank=True)
    # Smart Auto's decision for an Auto turn (empty for MAX turns and when the dial is Off): the scorer's score,
    # the threshold of the tenant's dial level, whether the turn went to the MAX chain, and the router's version.
    route_score = models.FloatField(null=True, blank=True)
    route_threshold = models.FloatField(null=True, blank=True)
    route_escalated = models.BooleanField(null=True, blank=True)
    router_version = models.CharField(max_length=40, blank=True)

    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cache_read_tokens = models.PositiveIntegerField(default=0)
    cache_write_tokens = models.PositiveIntegerField(default=0)
    output_estimated = models.BooleanField(default=False)
    cost = models.DecimalField(max_digits=20, decimal_places=10, default=0, help_text="Provider cost, USD.")
    billed = models.DecimalField(max_digits=20, decimal_places=10, default=0, help_text="Billed amount, USD.")
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    # The user's thumbs up (1) or down (-1) on an answer: the signal for recalibrating the router.
    feedback = models.SmallIntegerField(null=True, blank=True,
                                        choices=[(FEEDBACK_UP, "Good answer"), (FEEDBACK_DOWN, "Bad answer")])
    feedback_at = models.DateTimeField(null=True, blank=True)

    # The text as a tsvector for search (conversations.search), computed by Postgres and stored: a search's
    # filter reads it instead of parsing every candidate message again.
    search_vector = models.GeneratedField(expression=SearchVector("content", config=SEARCH_CONFIG),
                                          output_field=SearchVectorField(), db_persist=True)

    # Turn bookkeeping: which run owns the message (a redelivered or requeued task must not finish it twice).
    run_id = models.UUIDField(null=True, blank=True)
    run_count = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["conversation", "id"], name="msg_conversation_id"),
            # The heartbeat sweeper scans unfinished turns only.
            models.Index(
                fields=["status"],
                name="msg_unfinished",
                condition=models.Q(status__in=["queued", "streaming"]),
            ),
            # Staff satisfaction reads rated answers only (conversations.selectors.feedback_*_all_tenants): a
            # few rows of a table that grows by every turn, found without scanning it.
            models.Index(fields=["endpoint"], name="msg_rated", condition=models.Q(feedback__isnull=False)),
            # Search over message text (conversations.search): the tenant and the text's tsvector in one GIN
            # index (btree_gin), so a search reads only the tenant's matching rows, however many tenants share
            # the table.
            GinIndex(fields=["tenant", "search_vector"], name="msg_search"),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(feedback__in=[1, -1]) | models.Q(feedback__isnull=True),
                                   name="msg_feedback_valid"),
            # One answer at a time: a conversation has at most one unfinished answer. The send's INSERT meets
            # this index, so of two sends racing into one conversation exactly one makes a turn.
            models.UniqueConstraint(fields=["conversation"], name=ONE_RUNNING_TURN,
                                    condition=models.Q(role="assistant", status__in=["queued", "streaming"])),
        ]

    def __str__(self):
        return f"{self.role} message {self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def answered_tier(self) -> str:
        """The tier whose model answered, for the badge; "" when no model answered (a turn that failed or was
        stopped before any endpoint took it), so the badge never names a tier that did not answer. A queued
        answer's `tier` is the conversation's; the turn's end overwrites it with the tier that answered (MAX
        for an escalated Auto turn, Auto for a MAX turn the budget served on Auto)."""
        return self.tier if self.endpoint else ""

    @property
    def route_decision(self) -> str:
        """Smart Auto's decision on this answer: escalated, stayed (scored, left on Auto) or unscored (a MAX
        turn, the dial Off, a plan without MAX)."""
        if self.route_escalated is None or self.route_score is None:
            return ROUTE_UNSCORED
        return ROUTE_ESCALATED if self.route_escalated else ROUTE_STAYED

    @property
    def route_summary(self) -> str:
        """The footer's line for a scored turn: "Auto → claude-opus-4-6 · escalated (0.82)" or
        "Auto · kimi-k2.5 (0.12)"; "" for an unscored one (its footer keeps the plain model name). Only Auto
        requests are scored, so the line starts with what the user chose, then the endpoint that answered."""
        decision = self.route_decision
        if decision == ROUTE_UNSCORED:
            return ""
        asked, score = TIER_LABELS[TIER_AUTO], f"({self.route_score:.2f})"
        if decision == ROUTE_ESCALATED:
            return f"{asked} → {self.endpoint} · escalated {score}" if self.endpoint else f"{asked} · escalated {score}"
        return f"{asked} · {self.endpoint} {score}" if self.endpoint else f"{asked} {score}"

    @property
    def route_detail(self) -> str:
        """The longer account behind `route_summary` (its tooltip): score against threshold, and why a score at
        or over the threshold stayed on Auto (the budget rule holds escalation back)."""
        if self.route_decision == ROUTE_UNSCORED:
            return ""
        threshold = self.route_threshold
        parts = [f"Smart Auto score {self.route_score:.2f}"
                 + (f", threshold {threshold:.2f}" if threshold is not None else "")]
        if self.route_decision == ROUTE_STAYED and threshold is not None and self.route_score >= threshold:
            parts.append("not escalated: the plan's share of the monthly budget for MAX is used")
        if self.upstream_model:
            parts.append(" ".join(filter(None, ["answered by", self.provider, self.upstream_model])))
        if self.router_version:
            parts.append(f"router {self.router_version}")
        return " · ".join(parts)

    @property
    def can_rate(self) -> bool:
        """Whether the answer takes a thumbs up or down: an assistant message that has finished and that a
        model answered (a turn that failed before any endpoint took it has nothing to rate)."""
        return self.role == self.ROLE_ASSISTANT and self.is_finished and bool(self.endpoint)

    @property
    def slot_id(self) -> int:
        """The turn of a question: its first version's id, or its own."""
        return self.version_of_id or self.pk

    @property
    def usage_key(self) -> str:
        return f"chat:{self.pk}"

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens

    @staticmethod
    def new_run_id() -> uuid.UUID:
        return uuid.uuid4()


class ChatSettings(models.Model):
    """A workspace's chat settings, set by its admins: the default instructions every conversation's system
    prompt starts with. One row per tenant, made when first saved (no row: no default)."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="chat_settings")
    default_instructions = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"chat settings of {self.tenant_id}"
