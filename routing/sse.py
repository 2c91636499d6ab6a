"""A pure Server-Sent Events decoder: lines in, (event, data) pairs out. No I/O."""

from __future__ import annotations


class SSEDecoder:
    """Feed it the lines of an SSE stream (without line endings); it returns a complete event on each blank line.

    Follows the SSE spec where it matters to LLM streams: `data:` lines are joined with newlines, comments
    (`:`) are ignored, a single space after the colon is dropped, and an event without data is not dispatched.
    """

    __slots__ = ("_event", "_data")

    def __init__(self):
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, line: str) -> tuple[str | None, str] | None:
        if not line:
            if not self._data:
                self._event = None
                return None
            result = (self._event, "\n".join(self._data))
            self._event, self._data = None, []
            return result
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        return None

    def flush(self) -> tuple[str | None, str] | None:
        """An event left without its trailing blank line when the stream ended."""
        return self.feed("")
