"""Markdown demo answers, so `make dev` shows how answers render without calling the control API.

A prompt that mentions code, a table or a list (whole words, any case) gets an answer with that element, in that
order when it mentions several; any other prompt keeps the plain echo answer the tests rely on. Deterministic:
the same prompt always gets the same answer.
"""

from __future__ import annotations

import re

_CODE = """Here is a small example:

```python
def greet(name: str) -> str:
    return f"Hello, {name}!"


print(greet("kiwi"))
```

Run it with `python greet.py`."""

_TABLE = """| Model | Tier | Best for |
| --- | --- | --- |
| Kimi K2.5 | Auto | everyday questions |
| Claude Opus 4.6 | MAX | hard reasoning |"""

_LIST = """Three things to know:

1. **Auto** answers most questions at a fraction of the cost.
2. **MAX** takes the hardest ones.
3. You can switch tiers at any time:
   - per conversation,
   - from the menu above the message box."""

_SECTIONS = (
    (re.compile(r"\b(code|python|function|script)s?\b", re.I), _CODE),
    (re.compile(r"\b(table|compare|comparison)s?\b", re.I), _TABLE),
    (re.compile(r"\b(list|steps)\b", re.I), _LIST),
)


def demo_answer(*, model: str, prompt: str) -> str | None:
    """The markdown answer for `prompt`, or None when it asks for none of code, a table or a list."""
    parts = [text for pattern, text in _SECTIONS if pattern.search(prompt)]
    if not parts:
        return None
    return "\n\n".join([f"Echo from {model}:", *parts])
