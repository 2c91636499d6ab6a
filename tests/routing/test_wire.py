"""The adapters against wire examples transcribed from the providers' docs (tests/wire/, source in each file).
Pure: no I/O, no database."""

import json
from pathlib import Path

import pytest

from routing.errors import ProviderError
from routing.providers import anthropic, openai_compat
from routing.sse import SSEDecoder, SSELines
from routing.types import ChatMessage, ChatRequest, Finish, TextDelta, Usage, UsageUpdate

WIRE = Path(__file__).resolve().parent.parent / "wire"


def load(name):
    return json.loads((WIRE / name).read_text())


def parse_sse(adapter, name):
    """Feed a recorded stream through the decoder and adapter: (text, finish, usage, error kind or None)."""
    state, decoder = adapter.new_stream_state(), SSEDecoder()
    text, finish, usage, error = "", None, None, None
    try:
        for line in (WIRE / name).read_text().splitlines():
            item = decoder.feed(line)
            if item is None:
                continue
            for event in adapter.parse_stream_event(state, *item):
                if isinstance(event, TextDelta):
                    text += event.text
                elif isinstance(event, UsageUpdate):
                    usage = event.usage
                elif isinstance(event, Finish):
                    finish = event.finish_reason
    except ProviderError as exc:
        error = exc.kind
    return text, finish, usage, error


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 4096])
@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_stream_lines_are_the_same_however_the_bytes_are_split(size, ending):
    for path in WIRE.glob("*.sse"):
        expected = path.read_text().splitlines()
        data = ending.join(line.encode() for line in expected) + ending
        lines = SSELines()
        got = [line for i in range(0, len(data), size) for line in lines.feed(data[i:i + size])]
        assert got + lines.flush() == expected, (path.name, size)


def test_an_unterminated_last_line_comes_out_on_flush():
    lines = SSELines()
    assert lines.feed(b"data: one\n\ndata: t") == ["data: one", ""]
    assert lines.feed("wö".encode()[:2]) == []  # a character split across chunks waits for the rest
    assert lines.feed("wö".encode()[2:]) == []
    assert lines.flush() == ["data: twö"]


def test_every_wire_file_names_its_source():
    for path in WIRE.iterdir():
        head = path.read_text()[:400]
        assert "source" in head and "http" in head, path.name


def test_anthropic_non_streaming_message():
    parsed = anthropic.parse_response(load("anthropic_message.json")["body"])
    assert parsed.text == "Hi! My name is Claude."
    assert parsed.finish_reason == "stop"
    assert parsed.usage == Usage(input_tokens=2095, output_tokens=503, cache_read_tokens=1800, cache_write_tokens=0)


def test_anthropic_stream_with_pings():
    assert parse_sse(anthropic, "anthropic_stream.sse") == (
        "Hello!", "stop", Usage(input_tokens=25, output_tokens=15, cache_read_tokens=5, cache_write_tokens=10), None)


def test_anthropic_mid_stream_error_event():
    text, finish, usage, error = parse_sse(anthropic, "anthropic_stream_error.sse")
    assert (text, finish, error) == ("Once upon", None, "overloaded")
    assert usage == Usage(input_tokens=12)  # input known from message_start; output never reported


def test_anthropic_unknown_events_and_thinking_are_tolerated():
    assert parse_sse(anthropic, "anthropic_stream_unknown_event.sse") == (
        "Done.", "length", Usage(input_tokens=7, output_tokens=9), None)


def test_openai_non_streaming_excludes_cached_tokens_from_input():
    parsed = openai_compat.parse_response(load("openai_chat_completion.json")["body"])
    assert parsed.finish_reason == "length"
    assert parsed.usage == Usage(input_tokens=93, output_tokens=46, cache_read_tokens=1024)


def test_moonshot_non_streaming_with_cached_tokens():
    parsed = openai_compat.parse_response(load("moonshot_chat_completion.json")["body"])
    assert parsed.text == "Hello, Li Lei! 1+1 equals 2."
    assert parsed.usage == Usage(input_tokens=9, output_tokens=21, cache_read_tokens=10)


def test_openai_stream_with_final_usage_chunk():
    assert parse_sse(openai_compat, "openai_stream.sse") == (
        "Hello there", "stop", Usage(input_tokens=19, output_tokens=2), None)


def test_moonshot_stream_with_usage_in_the_last_choice():
    assert parse_sse(openai_compat, "moonshot_stream_usage_in_choice.sse") == (
        "Hello, Li Lei!", "stop", Usage(input_tokens=11, output_tokens=13, cache_read_tokens=8), None)


def test_openai_mid_stream_error_chunk():
    text, finish, _, error = parse_sse(openai_compat, "openai_stream_error.sse")
    assert (text, finish, error) == ("Partial", None, "overloaded")


@pytest.mark.parametrize(
    "adapter,name,kind,retryable,retry_after",
    [
        (anthropic, "anthropic_error_429.json", "rate_limited", True, 7.0),
        (anthropic, "anthropic_error_529.json", "overloaded", True, None),
        (anthropic, "anthropic_error_500.json", "server", True, None),
        (anthropic, "anthropic_error_400.json", "bad_request", False, None),
        (anthropic, "anthropic_error_400_context.json", "context_length", False, None),
        (anthropic, "anthropic_error_401.json", "auth", False, None),
        (openai_compat, "moonshot_error_429_engine_overloaded.json", "overloaded", True, None),
        (openai_compat, "moonshot_error_429_rate_limit.json", "rate_limited", True, 3.0),
        (openai_compat, "moonshot_error_400_context.json", "context_length", False, None),
        (openai_compat, "moonshot_error_400_content_filter.json", "content_filter", False, None),
        (openai_compat, "moonshot_error_401.json", "auth", False, None),
        (openai_compat, "openai_error_400_context.json", "context_length", False, None),
        (openai_compat, "openai_error_500.json", "server", True, None),
    ],
)
def test_error_bodies_are_classified(adapter, name, kind, retryable, retry_after):
    case = load(name)
    error = adapter.classify_error(case["status"], case["headers"], json.dumps(case["body"]).encode())
    assert (error.kind, error.retryable, error.retry_after, error.status) == (
        kind, retryable, retry_after, case["status"])
    assert error.message


def test_anthropic_request_shape():
    request = ChatRequest(messages=[ChatMessage("user", "Hi")], system="Be brief", max_tokens=50,
                          temperature=1.5, stop=["END"])
    up = anthropic.build_request(base_url="https://api.anthropic.com/", api_key="sk-a", model="claude-opus-4-6",
                                 request=request, stream=True, max_tokens=50)
    assert up.url == "https://api.anthropic.com/v1/messages"
    assert up.headers["x-api-key"] == "sk-a" and up.headers["anthropic-version"] == "2023-06-01"
    assert up.body == {"model": "claude-opus-4-6", "max_tokens": 50, "system": "Be brief",
                       "messages": [{"role": "user", "content": "Hi"}], "temperature": 1.0,
                       "stop_sequences": ["END"], "stream": True}


def test_openai_compatible_request_shape():
    request = ChatRequest(messages=[ChatMessage("user", "Hi")], system="Be brief", temperature=0.3)
    up = openai_compat.build_request(base_url="https://api.moonshot.ai/v1", api_key="sk-m", model="kimi-k2.5",
                                     request=request, stream=True, max_tokens=4096)
    assert up.url == "https://api.moonshot.ai/v1/chat/completions"
    assert up.headers["authorization"] == "Bearer sk-m"
    assert up.body["messages"][0] == {"role": "system", "content": "Be brief"}
    assert up.body["stream_options"] == {"include_usage": True}
    assert up.body["temperature"] == 0.3 and up.body["max_tokens"] == 4096
