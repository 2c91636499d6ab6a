"""A pure Server-Sent Events decoder: bytes in, lines (SSELines), then (event, data) pairs (SSEDecoder). No I/O."""

from __future__ import annotations


class SSELines:
    """Feed it the body of an event stream as it arrives; it returns the complete lines, decoded as UTF-8 (the
    only encoding SSE allows). Lines end in LF, CRLF or CR, including a CRLF split across two chunks.

    Replaces httpx's `aiter_lines` on the hot path: that one detects the charset and decodes text per chunk,
    then splits it with a general line decoder, several times the work for the few lines of a delta."""

    __slots__ = ("_buffer", "_skip_lf")

    def __init__(self):
        self._buffer = b""
        self._skip_lf = False  # the last chunk ended in CR: a leading LF belongs to that line break

    def feed(self, chunk: bytes) -> list[str]:
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        data = self._buffer + chunk if self._buffer else chunk
        if not data:
            return []
        lines = data.splitlines()
        end = data[-1:]
        if end == b"\n" or end == b"\r":
            self._buffer = b""
            self._skip_lf = end == b"\r"
        else:
            self._buffer = lines.pop()
        return [line.decode("utf-8", "replace") for line in lines]

    def flush(self) -> list[str]:
        """The last line, when the stream ended without a line break after it."""
        rest, self._buffer = self._buffer, b""
        return [rest.decode("utf-8", "replace")] if rest else []


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
