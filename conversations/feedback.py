"""Answer feedback: the owner's thumbs up or down on an answer, the signal smart Auto is judged and recalibrated
with (the staff satisfaction table reads it through `conversations.selectors`).

Kept apart from `conversations.services`, which is the turn's machinery; this is one small use case. Setting is
absolute, not a toggle: the buttons post the value they mean ("clear" when already pressed), so a repeated
request (a double click, a retried POST) lands on the same state.
"""

from django.utils import timezone

from .models import FEEDBACK_DOWN, FEEDBACK_UP, Message
from .services import ChatRefused

# What the buttons post, and the value each one stores.
FEEDBACK_VALUES: dict[str, int | None] = {"up": FEEDBACK_UP, "down": FEEDBACK_DOWN, "clear": None}


class FeedbackRefused(ChatRefused):
    """Feedback that cannot be stored. `str(exc)` is fit to show people; nothing was changed."""


def message_feedback_set(*, message: Message, value: int | None) -> Message:
    """Rate an answer up (1) or down (-1), or clear its rating (None); `feedback_at` says when it was given.

    The caller loaded `message` through `selectors.message_get` with the viewer's tenant and user: only the
    conversation's owner reaches here, anyone else got the missing-id answer. Raises FeedbackRefused, changing
    nothing, for another value, a question, an answer still being generated, or a turn no model answered.
    One UPDATE of two columns: a finished answer's other fields no longer change, so nothing else is locked."""
    if value not in (FEEDBACK_UP, FEEDBACK_DOWN, None):
        raise FeedbackRefused("Rate an answer up or down, or clear the rating.")
    if message.role != Message.ROLE_ASSISTANT:
        raise FeedbackRefused("Only an answer can be rated.")
    if not message.is_finished:
        raise FeedbackRefused("This answer is still being generated; rate it once it is done.")
    if not message.can_rate:
        raise FeedbackRefused("No model answered this turn, so there is nothing to rate.")
    at = timezone.now() if value is not None else None
    Message.objects.filter(pk=message.pk).update(feedback=value, feedback_at=at)
    message.feedback, message.feedback_at = value, at
    return message
