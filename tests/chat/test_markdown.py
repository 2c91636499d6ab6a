"""Answers as HTML: fenced code highlighted on the server (Pygments classes, no inline styles), with its
language and a Copy button; everything a model writes stays text."""

import re

from conversations.markdown import pygments_css
from conversations.templatetags.chat import chat_markdown

PYTHON = "Try:\n\n```python\ndef f(x):\n    return '<b>' + x\n```\n"


def test_a_fenced_block_is_highlighted_with_a_language_label_and_a_copy_button():
    html = str(chat_markdown(PYTHON))
    assert '<span class="code-lang">python</span>' in html
    assert '<button type="button" class="code-copy">Copy</button>' in html
    assert '<span class="k">def</span>' in html  # Pygments' token classes
    assert "&lt;b&gt;" in html and "<b>" not in html
    assert "style=" not in html  # the CSP allows no inline styles: colours come from pygments.css


def test_an_unknown_or_missing_language_is_plain_escaped_text():
    html = str(chat_markdown("```\n<script>alert(1)</script>\n```"))
    assert '<span class="code-lang">text</span>' in html
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert '<span class="k">' not in html


def test_a_hostile_info_string_stays_a_language_name():
    html = str(chat_markdown('```x" onclick="alert(1)\ncode\n```'))
    assert "onclick" not in html
    assert '<span class="code-lang">x</span>' in html  # the first word, word characters only


def test_raw_html_in_an_answer_is_still_text():
    html = str(chat_markdown('<button class="code-copy" onclick="x()">Copy</button> <img src=x>'))
    assert not re.search(r"<(button|img)\b", html)
    assert "&lt;button" in html


def test_the_class_theme_is_scoped_to_code_blocks():
    css = pygments_css()
    assert css and all(line.startswith(".code-block pre") for line in css.splitlines())
    with open("static/css/pygments.css") as committed:
        assert css in committed.read()  # the committed theme is what pygments_css() makes
