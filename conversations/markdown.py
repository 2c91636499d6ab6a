"""Fenced code in answers: highlighted on the server with Pygments, under a header with the language and a
Copy button (static/js/chat.js copies the code's text).

Pygments emits `<span class="k">`-style markup only (`nowrap`, no inline styles: the CSP forbids them); the
colours are a class theme in static/css/pygments.css, made by `pygments_css()`. The code itself is escaped by
Pygments (or by `escape` for a language it does not know), and the rendered answer still goes through nh3.
"""

import re
from html import escape

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

THEME = "github-dark"  # the code box is dark in both colour schemes
CSS_SCOPE = ".code-block pre"
_formatter = HtmlFormatter(nowrap=True)


def _lexer(name: str):
    if not name:
        return None
    try:
        return get_lexer_by_name(name)
    except ClassNotFound:
        return None


def render_fence(self, tokens, idx, options, env) -> str:
    """markdown-it's render rule for a fenced block (``` with an optional language)."""
    token = tokens[idx]
    info = token.info.strip().split(maxsplit=1)[0].lower() if token.info.strip() else ""
    info = re.sub(r"[^\w+#.-]", "", info)[:30]  # a language name, nothing else
    lexer = _lexer(info)
    body = highlight(token.content, lexer, _formatter) if lexer is not None else escape(token.content)
    language = escape(info or "text")
    return (
        f'<div class="code-block"><div class="code-head"><span class="code-lang">{language}</span>'
        f'<button type="button" class="code-copy">Copy</button></div>'
        f'<pre><code class="language-{language}">{body}</code></pre></div>\n'
    )


def pygments_css() -> str:
    """The class theme for static/css/pygments.css (regenerate: `.venv/bin/python -c "from conversations.markdown
    import pygments_css; print(pygments_css())" > static/css/pygments.css`)."""
    rules = HtmlFormatter(style=THEME).get_style_defs(CSS_SCOPE).splitlines()
    return "\n".join(rule for rule in rules if rule.startswith(CSS_SCOPE))  # no global pre/line-number rules
