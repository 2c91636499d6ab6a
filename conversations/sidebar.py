"""The conversation list: one page of the user's conversations, grouped by date as chat apps do (Today,
Yesterday, Previous 7 days, Older), and the message hits of a search."""

import datetime
from dataclasses import dataclass

from django.utils import timezone

from .models import Conversation

PAGE_SIZE = 100
GROUPS = ("Today", "Yesterday", "Previous 7 days", "Older")


@dataclass
class Entry:
    conversation: Conversation
    group: str
    starts_group: bool  # the first entry of its group on the list: the group's heading goes above it


@dataclass
class Page:
    entries: list[Entry]
    next_page: int | None  # the page "Show more" loads, or None at the end


def date_group(when: datetime.datetime, today: datetime.date) -> str:
    day = timezone.localtime(when).date()
    if day >= today:
        return GROUPS[0]
    if day == today - datetime.timedelta(days=1):
        return GROUPS[1]
    if day > today - datetime.timedelta(days=8):
        return GROUPS[2]
    return GROUPS[3]


def page_of(conversations, page: int = 1) -> Page:
    """Page `page` (from 1) of `conversations` (a queryset, most recent first). One query: the page, the entry
    before it (whose group decides whether the page's first entry needs a heading) and one after (is there
    more?)."""
    page = max(page, 1)
    start = (page - 1) * PAGE_SIZE
    before = 1 if start else 0
    rows = list(conversations[start - before:start + PAGE_SIZE + 1])
    today = timezone.localdate()
    previous = date_group(rows[0].updated_at, today) if before and rows else None
    entries = []
    for conversation in rows[before:before + PAGE_SIZE]:
        group = date_group(conversation.updated_at, today)
        entries.append(Entry(conversation=conversation, group=group, starts_group=group != previous))
        previous = group
    more = len(rows) > before + PAGE_SIZE
    return Page(entries=entries, next_page=page + 1 if more else None)
