"""Template filters of the chat: model answers as safe HTML, money for display, smart Auto's decisions by name."""

from decimal import Decimal

import nh3
from django import template
from django.utils.safestring import mark_safe
from markdown_it import MarkdownIt

from billing.money import display_usd
from conversations.markdown import render_fence
from conversations.models import ROUTE_DECISION_LABELS

register = template.Library()

# Raw HTML in an answer is shown as text (html=False), and the rendered HTML is sanitized again with nh3 as a
# second wall: a model's answer is untrusted input. No images: a remote image in an answer could leak the page.
# Fenced code is highlighted here, on the server, with Pygments (conversations.markdown): class names only, the
# colours come from static/css/pygments.css (the CSP allows no inline styles).
_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "breaks": True}).enable(["table", "strikethrough"])
_md.add_render_rule("fence", render_fence)
_ALLOWED_TAGS = {
    "p", "br", "hr", "strong", "em", "del", "s", "code", "pre", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "a", "table", "thead", "tbody", "tr", "th", "td", "div", "span", "button",
}
_ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "div": {"class"},
    "span": {"class"},
    "button": {"class", "type"},
    "code": {"class"},
    "ol": {"start"},
    "th": {"style"},
    "td": {"style"},
}


@register.filter
def chat_markdown(text: str) -> str:
    html = _md.render(text or "")
    return mark_safe(
        nh3.clean(html, tags=_ALLOWED_TAGS, attributes=_ALLOWED_ATTRIBUTES, url_schemes={"http", "https", "mailto"},
                  link_rel="noopener noreferrer nofollow")
    )


@register.filter
def usd(amount) -> str:
    """Display only: billing's one rule for showing money (billing.money.display_usd), as on every other page."""
    return display_usd(Decimal(0) if amount is None else amount)


@register.simple_tag(takes_context=True)
def stream_url(context, message) -> str:
    """The SSE URL of an unfinished answer, with the stream token of the viewer's session."""
    from conversations.sse import stream_url as url_for

    return url_for(context.get("request"), message)


@register.filter
def route_decision_label(decision: str) -> str:
    """"Escalated to MAX", "Stayed on Auto" or "Not scored", for a `Message.route_decision` value."""
    return ROUTE_DECISION_LABELS.get(decision, decision)
