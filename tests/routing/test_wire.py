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


def _stream_finish(adapter, name):
    state, decoder, finishes = adapter.new_stream_state(), SSEDecoder(), []
    for line in (WIRE / name).read_text().splitlines():
        item = decoder.feed(line)
        if item is not None:
            finishes += [e for e in adapter.parse_stream_event(state, *item) if isinstance(e, Finish)]
    return finishes


def test_anthropic_stop_sequence_stop_says_which_sequence():
    parsed = anthropic.parse_response(load("anthropic_message_stop_sequence.json")["body"])
    assert (parsed.text, parsed.finish_reason, parsed.stop_sequence) == ("1, 2, 3, 4", "stop", ", 5")
    assert _stream_finish(anthropic, "anthropic_stream_stop_sequence.sse") == [Finish("stop", ", 5")]
    # A natural end names no sequence (the field is null there).
    assert anthropic.parse_response(load("anthropic_message.json")["body"]).stop_sequence is None
    assert _stream_finish(anthropic, "anthropic_stream.sse") == [Finish("stop", None)]


def test_openai_stop_does_not_say_which_sequence():
    parsed = openai_compat.parse_response(load("openai_chat_completion_stop.json")["body"])
    assert (parsed.finish_reason, parsed.stop_sequence) == ("stop", None)


def _facts():
    from proxy.formatting import RouteFacts

    return RouteFacts(request_id="r1", tier="max", endpoint="claude-opus-4-6", upstream_model="claude-opus-4-6",
                      fallback_count=0)


def test_the_anthropic_endpoint_reports_a_stop_sequence_as_anthropic_does():
    """The proxy's /v1/messages answer carries stop_reason "stop_sequence" and the sequence, in the documented
    places: the message (anthropic_message_stop_sequence.json) and the stream's message_delta
    (anthropic_stream_stop_sequence.sse)."""
    from decimal import Decimal

    from proxy.formatting import AnthropicEvents, anthropic_message

    documented = load("anthropic_message_stop_sequence.json")["body"]
    body = json.loads(anthropic_message(_facts(), "1, 2, 3, 4", "stop", Usage(12, 11), Decimal(0), Decimal(0),
                                        ", 5"))
    assert (body["stop_reason"], body["stop_sequence"]) == (documented["stop_reason"], documented["stop_sequence"])
    assert set(documented) <= set(body)
    events = AnthropicEvents(_facts()).finish("stop", Usage(12, 11), Decimal(0), Decimal(0), ", 5").decode()
    delta = next(json.loads(line[6:]) for line in events.splitlines() if '"message_delta"' in line
                 and line.startswith("data: "))
    assert delta["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": ", 5"}
    # Without a sequence: end_turn and null, as before; a length stop stays max_tokens.
    plain = json.loads(anthropic_message(_facts(), "x", "stop", Usage(), Decimal(0), Decimal(0)))
    assert (plain["stop_reason"], plain["stop_sequence"]) == ("end_turn", None)
    cut = json.loads(anthropic_message(_facts(), "x", "length", Usage(), Decimal(0), Decimal(0)))
    assert (cut["stop_reason"], cut["stop_sequence"]) == ("max_tokens", None)


@pytest.mark.parametrize("model, temperature, sent", [
    ("kimi-k2.5", 1.5, 1.0), ("moonshot-v1-8k", 0.7, 0.7), ("gpt-4o", 1.5, 1.5), ("gpt-4o", 2.0, 2.0)])
def test_openai_compatible_temperature_is_clamped_to_the_providers_range(model, temperature, sent):
    request = ChatRequest(messages=[ChatMessage("user", "Hi")], temperature=temperature, seed=7)
    up = openai_compat.build_request(base_url="https://x/v1", api_key="k", model=model, request=request,
                                     stream=False, max_tokens=10)
    assert (up.body["temperature"], up.body["seed"]) == (sent, 7)


def test_anthropic_gets_no_seed_and_a_temperature_within_0_to_1():
    request = ChatRequest(messages=[ChatMessage("user", "Hi")], temperature=0.4, seed=7)
    up = anthropic.build_request(base_url="https://x", api_key="k", model="claude-opus-4-6", request=request,
                                 stream=False, max_tokens=10)
    assert up.body["temperature"] == 0.4 and "seed" not in up.body
