"""Search over message text: Postgres full-text search on the `msg_search` GIN index (tenant, the stored
tsvector `Message.search_vector`),
scoped to the user's own conversations in the current tenant, with highlighted snippets.

The snippet is Postgres' `ts_headline`, which returns the message text itself: untrusted. It is asked to mark
the hits with two private-use characters, then the whole snippet is HTML-escaped and only those markers become
<mark> tags, so nothing a message says can become markup. Figures at 1,000,000 messages in 1,000 tenants:
bench/chat_search.py, bench/README.md ("Chat search").
"""

from dataclasses import dataclass
from html import escape

from django.contrib.postgres.search import SearchHeadline, SearchQuery
from django.db.models import F
from django.utils.safestring import SafeString, mark_safe

from tenants.models import Tenant, User

from .models import SEARCH_CONFIG, Message

MAX_RESULTS = 20
MAX_QUERY_CHARS = 200
_START, _STOP = "\ue000", "\ue001"  # private-use: what ts_headline wraps each hit in


@dataclass
class Hit:
    message_id: int
    conversation_id: int
    conversation_title: str
    role: str
    snippet: SafeString

    @property
    def url(self) -> str:
        return f"/chat/{self.conversation_id}/#msg-{self.message_id}"


def snippet_html(headline: str) -> SafeString:
    """ts_headline's text, escaped, with the hit markers (and only they) turned into <mark> tags; a marker the
    message itself contained is dropped first, so the tags always pair up."""
    text = escape(headline.replace(_START, "").replace(_STOP, "") if headline.count(_START) != headline.count(_STOP)
                  else headline)
    return mark_safe(" ".join(text.replace(_START, "<mark>").replace(_STOP, "</mark>").split()))


def message_search(*, tenant: Tenant, user: User, query: str, limit: int = MAX_RESULTS) -> list[Hit]:
    """The user's messages in `tenant` that match `query` (web search syntax: words, "a phrase", -not, or),
    the most recent first. [] for an empty query."""
    query = " ".join((query or "").split())[:MAX_QUERY_CHARS]
    if not query:
        return []
    search = SearchQuery(query, config=SEARCH_CONFIG, search_type="websearch")
    rows = (
        Message.objects
        .filter(tenant_id=tenant.pk, search_vector=search, conversation__owner=user, conversation__tenant_id=tenant.pk)
        .annotate(title=F("conversation__title"),
                  headline=SearchHeadline("content", search, config=SEARCH_CONFIG, start_sel=_START,
                                          stop_sel=_STOP, max_words=24, min_words=10, max_fragments=2,
                                          fragment_delimiter=" … "))
        .order_by("-id")
        .values_list("id", "conversation_id", "title", "role", "headline")[:limit]
    )
    return [Hit(message_id=i, conversation_id=c, conversation_title=t, role=r, snippet=snippet_html(h))
            for i, c, t, r, h in rows]
