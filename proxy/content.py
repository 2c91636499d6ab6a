"""Messages of both protocols, content beyond text included: images, tool calls and tool results, cache
breakpoints. Parsed into routing.types (a message that is only text stays `ChatMessage(role, text)`, exactly as
a chat turn's; one with more carries its `blocks`); bad input is a ProxyError("invalid") naming the field.

Where each protocol puts things (normalized to Anthropic's shape, which holds both):
  OpenAI     assistant `tool_calls` (arguments: JSON text)  ->  ToolUseBlocks of the assistant message
             `tool` role messages                         ->  ToolResultBlocks of one user message (consecutive
                                                              results, and the user message after them, merge)
             `image_url` parts (data: or https: URLs)     ->  ImageBlocks
  Anthropic  `tool_use` blocks (input: an object)         ->  ToolUseBlocks (the input as compact JSON text)
             `tool_result` blocks (is_error)              ->  ToolResultBlocks
             `image` blocks (base64 or url source)        ->  ImageBlocks
             `cache_control` on blocks / system / tools   ->  kept on the block (sent to Anthropic endpoints only)
A tool result must answer a tool call of an earlier assistant message in the same request.

Images: png, jpeg, gif or webp; base64 data up to PROXY_MAX_IMAGE_BYTES decoded (5 MB, Anthropic's own limit);
a URL must be https and is never fetched here: routing sends it only to providers that fetch URLs.
"""

import binascii
import re
from base64 import b64decode
from dataclasses import replace

import orjson
from django.conf import settings

from routing.types import ChatMessage, ImageBlock, TextBlock, ToolResultBlock, ToolUseBlock

from .errors import ProxyError

IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
_DATA_URL = re.compile(r"data:(image/[a-z+.-]+);base64,(.*)", re.S)
_EMPTY = (None, [], {})


def invalid(message: str, param: str | None = None) -> ProxyError:
    return ProxyError("invalid", message, param=param)


def no_extra_keys(item: dict, allowed: tuple[str, ...], where: str) -> None:
    """Refuse a key the router would otherwise drop (a message's `name`, an unknown block field...); a key sent
    as null or empty counts as absent (SDK objects round-trip with `"tool_calls": null` or `[]`)."""
    for key, value in item.items():
        if key not in allowed and value not in _EMPTY:
            raise invalid(f"`{where}.{key}` is not supported by KiwiClaw.", f"{where}.{key}")


def text_parts(content, where: str) -> str:
    """Text of a message that must be text: a string, or a list of text parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid(f"`{where}` must be a string or a list of text parts.", where)
    texts = []
    for i, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise invalid(f"`{where}[{i}]` is a {kind!r} part; only text parts are allowed here.", f"{where}[{i}]")
        if len(part) > 2:
            no_extra_keys(part, ("type", "text"), f"{where}[{i}]")
        texts.append(part["text"])
    return "\n".join(texts)


def cache_control(value, where: str) -> dict | None:
    if value is None:
        return None
    if (not isinstance(value, dict) or value.get("type") != "ephemeral" or set(value) - {"type", "ttl"}
            or value.get("ttl", "5m") not in ("5m", "1h")):
        raise invalid(f"`{where}` must be {{\"type\": \"ephemeral\"}} with an optional ttl of \"5m\" or \"1h\".",
                      where)
    return value


def max_image_bytes() -> int:
    return int(getattr(settings, "PROXY_MAX_IMAGE_BYTES", 5 * 1024 * 1024))


def image_base64(media_type, data, where: str, *, detail: str | None = None, cache=None) -> ImageBlock:
    if media_type not in IMAGE_TYPES:
        raise invalid(f"`{where}` is of type {media_type!r}: images must be image/png, image/jpeg, image/gif or "
                      "image/webp.", where)
    if not isinstance(data, str) or not data:
        raise invalid(f"`{where}` has no base64 data.", where)
    limit = max_image_bytes()
    if len(data) * 3 // 4 > limit + 2:  # refuse an oversized image before decoding it
        raise invalid(f"`{where}` is about {len(data) * 3 // 4} bytes; the limit is {limit} bytes per image.", where)
    try:
        size = len(b64decode(data, validate=True))
    except (binascii.Error, ValueError):
        raise invalid(f"`{where}` is not valid base64 data.", where) from None
    if size > limit:
        raise invalid(f"`{where}` is {size} bytes; the limit is {limit} bytes per image.", where)
    return ImageBlock(media_type=media_type, data=data, detail=detail, size=size, cache_control=cache)


def image_url(url, where: str, *, detail: str | None = None, cache=None) -> ImageBlock:
    if not isinstance(url, str) or not url.startswith("https://") or len(url) > 8192:
        raise invalid(f"`{where}` must be an https URL or base64 data.", where)
    return ImageBlock(url=url, detail=detail, cache_control=cache)


def render(blocks) -> str:
    """A message's text rendition (what estimators and the smart scorer read): its text, tool calls and tool
    results; no image data."""
    out = []
    for block in blocks:
        kind = type(block)
        if kind is TextBlock:
            out.append(block.text)
        elif kind is ToolUseBlock:
            out.append(f"{block.name}({block.arguments})")
        elif kind is ToolResultBlock:
            out.append(block.content if isinstance(block.content, str) else render(block.content))
    return "\n".join(out)


def message(role: str, blocks: list) -> ChatMessage:
    """A message of these blocks: plain text when that is all it is (the chat path's shape)."""
    if all(type(b) is TextBlock and b.cache_control is None for b in blocks):
        return ChatMessage(role=role, content="\n".join(b.text for b in blocks))
    return ChatMessage(role=role, content=render(blocks), blocks=tuple(blocks))


def with_breakpoint(msg: ChatMessage, cache: dict) -> ChatMessage:
    """`msg` with a cache breakpoint on its last block (Anthropic's top-level cache_control does this to the
    request's last cacheable block)."""
    blocks = list(msg.blocks) if msg.blocks is not None else [TextBlock(msg.content)]
    last = blocks[-1]
    blocks[-1] = replace(last, cache_control=cache)
    return ChatMessage(role=msg.role, content=msg.content, blocks=tuple(blocks))


# --- OpenAI ---


def _openai_image(part: dict, where: str) -> ImageBlock:
    no_extra_keys(part, ("type", "image_url"), where)
    image = part.get("image_url")
    if not isinstance(image, dict):
        raise invalid(f"`{where}.image_url` must be an object with `url`.", f"{where}.image_url")
    no_extra_keys(image, ("url", "detail"), f"{where}.image_url")
    detail = image.get("detail")
    if detail not in (None, "auto", "low", "high"):
        raise invalid(f"`{where}.image_url.detail` must be auto, low or high.", f"{where}.image_url.detail")
    url = image.get("url")
    data = _DATA_URL.fullmatch(url) if isinstance(url, str) and url.startswith("data:") else None
    if data is not None:
        return image_base64(data.group(1), data.group(2), f"{where}.image_url", detail=detail)
    if isinstance(url, str) and url.startswith("data:"):
        raise invalid(f"`{where}.image_url.url` must be a base64 data URL (data:image/png;base64,...).",
                      f"{where}.image_url")
    return image_url(url, f"{where}.image_url", detail=detail)


def _openai_user_blocks(content, where: str) -> list:
    if isinstance(content, str):
        return [TextBlock(content)]
    if not isinstance(content, list):
        raise invalid(f"`{where}` must be a string or a list of content parts.", where)
    blocks = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "image_url":
            blocks.append(_openai_image(part, f"{where}[{i}]"))
        else:
            blocks.append(TextBlock(text_parts([part], where)))  # refuses anything but a text part, by index
    return blocks


def _openai_tool_calls(calls, where: str, call_ids: set) -> list:
    if not isinstance(calls, list):
        raise invalid(f"`{where}` must be a list of tool calls.", where)
    blocks = []
    for i, call in enumerate(calls):
        at = f"{where}[{i}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or call.get("type", "function") != "function":
            raise invalid(f"`{at}` must be a function tool call with `id` and `function`.", at)
        # `index` comes with a tool call accumulated from a stream (the SDKs keep it): it says nothing here.
        no_extra_keys(call, ("id", "type", "function", "index"), at)
        no_extra_keys(function, ("name", "arguments", "parsed_arguments"), f"{at}.function")
        call_id, name, arguments = call.get("id"), function.get("name"), function.get("arguments")
        if not isinstance(call_id, str) or not call_id:
            raise invalid(f"`{at}.id` is required.", f"{at}.id")
        if not isinstance(name, str) or not name:
            raise invalid(f"`{at}.function.name` is required.", f"{at}.function.name")
        blocks.append(ToolUseBlock(id=call_id, name=name, arguments=json_object_text(arguments,
                                                                                    f"{at}.function.arguments")))
        call_ids.add(call_id)
    return blocks


def json_object_text(arguments, where: str) -> str:
    """Tool arguments as JSON text of an object ("" means no arguments)."""
    if arguments in (None, ""):
        return "{}"
    try:
        value = orjson.loads(arguments) if isinstance(arguments, str) else None
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise invalid(f"`{where}` must be the JSON text of an object.", where)
    return arguments


def openai_messages(raw: list) -> tuple[list[str], list[ChatMessage]]:
    """(system texts, messages) of an OpenAI `messages` list."""
    system_parts: list[str] = []
    messages: list[ChatMessage] = []
    call_ids: set[str] = set()
    results: list | None = None  # the open user turn that tool results go into
    for i, msg in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise invalid(f"`{where}` must be an object with `role` and `content`.", where)
        role = msg.get("role")
        if role not in ("system", "developer", "user", "assistant", "tool"):
            raise invalid(f"`{where}.role` must be one of system, developer, user, assistant, tool.", f"{where}.role")
        if role == "tool":
            no_extra_keys(msg, ("role", "content", "tool_call_id"), where)
            call_id = msg.get("tool_call_id")
            if call_id not in call_ids:
                raise invalid(f"`{where}.tool_call_id` {call_id!r} answers no tool call of an earlier assistant "
                              "message.", f"{where}.tool_call_id")
            block = ToolResultBlock(tool_use_id=call_id, content=text_parts(msg.get("content") or "",
                                                                            f"{where}.content"))
            if results is None:
                results = [block]
                messages.append(None)  # filled in when the turn is complete
            else:
                results.append(block)
            messages[-1] = message("user", results)
            continue
        if role == "assistant" and msg.get("tool_calls") not in _EMPTY:
            no_extra_keys(msg, ("role", "content", "tool_calls", "refusal"), where)
            text = text_parts(msg["content"], f"{where}.content") if msg.get("content") is not None else ""
            uses = _openai_tool_calls(msg["tool_calls"], f"{where}.tool_calls", call_ids)
            messages.append(message("assistant", ([TextBlock(text)] if text else []) + uses))
            results = None
            continue
        if "content" not in msg or msg["content"] is None:
            raise invalid(f"`{where}.content` is required.", f"{where}.content")
        if len(msg) > 2:
            no_extra_keys(msg, ("role", "content"), where)
        if role == "user" and results is None and isinstance(msg["content"], str):
            messages.append(ChatMessage(role="user", content=msg["content"]))  # the common case, kept lean
            continue
        if role == "user":
            blocks = _openai_user_blocks(msg["content"], f"{where}.content")
            if results is not None:  # the user turn after tool results joins them (one user turn)
                results += blocks
                messages[-1] = message("user", results)
                results = None
            else:
                messages.append(message("user", blocks))
            continue
        results = None
        text = text_parts(msg["content"], f"{where}.content")
        if role == "assistant":
            messages.append(ChatMessage(role="assistant", content=text))
        else:
            system_parts.append(text)
    return system_parts, messages


# --- Anthropic ---

_BLOCK_KEYS = {
    "text": ("type", "text", "cache_control", "citations"),
    "image": ("type", "source", "cache_control"),
    "tool_use": ("type", "id", "name", "input", "cache_control", "caller"),
    "tool_result": ("type", "tool_use_id", "content", "is_error", "cache_control"),
}


def _anthropic_image(block: dict, where: str, cache) -> ImageBlock:
    source = block.get("source")
    if not isinstance(source, dict) or source.get("type") not in ("base64", "url"):
        raise invalid(f"`{where}.source` must be a base64 or url image source.", f"{where}.source")
    if source["type"] == "base64":
        no_extra_keys(source, ("type", "media_type", "data"), f"{where}.source")
        return image_base64(source.get("media_type"), source.get("data"), f"{where}.source", cache=cache)
    no_extra_keys(source, ("type", "url"), f"{where}.source")
    return image_url(source.get("url"), f"{where}.source", cache=cache)


def anthropic_blocks(content, where: str, *, role: str, call_ids: set, inner: bool = False) -> list:
    """The blocks of a message's content (or of a tool result's content, `inner`)."""
    if isinstance(content, str):
        return [TextBlock(content)]
    if not isinstance(content, list):
        raise invalid(f"`{where}` must be a string or a list of content blocks.", where)
    allowed = ("text", "image") if inner else ("text", "image", "tool_result") if role == "user" \
        else ("text", "tool_use")
    blocks = []
    for j, block in enumerate(content):
        at = f"{where}.{j}"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind not in allowed:
            raise invalid(f"`{at}.type` {kind!r} is not supported here: use one of {', '.join(allowed)}.",
                          f"{at}.type")
        no_extra_keys(block, _BLOCK_KEYS[kind], at)
        cache = cache_control(block.get("cache_control"), f"{at}.cache_control")
        if block.get("caller") not in (None, {"type": "direct"}):
            raise invalid(f"`{at}.caller` is not supported by KiwiClaw.", f"{at}.caller")
        if kind == "text":
            if not isinstance(block.get("text"), str):
                raise invalid(f"`{at}.text` must be a string.", f"{at}.text")
            blocks.append(TextBlock(block["text"], cache))
        elif kind == "image":
            blocks.append(_anthropic_image(block, at, cache))
        elif kind == "tool_use":
            call_id, name, tool_input = block.get("id"), block.get("name"), block.get("input")
            if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
                raise invalid(f"`{at}` needs an `id` and a `name`.", at)
            if not isinstance(tool_input, dict):
                raise invalid(f"`{at}.input` must be an object.", f"{at}.input")
            blocks.append(ToolUseBlock(id=call_id, name=name, arguments=orjson.dumps(tool_input).decode(),
                                       cache_control=cache))
            call_ids.add(call_id)
        else:
            call_id = block.get("tool_use_id")
            if call_id not in call_ids:
                raise invalid(f"`{at}.tool_use_id` {call_id!r} answers no tool_use block of an earlier assistant "
                              "message.", f"{at}.tool_use_id")
            is_error = block.get("is_error")
            if is_error is not None and not isinstance(is_error, bool):
                raise invalid(f"`{at}.is_error` must be true or false.", f"{at}.is_error")
            inner_blocks = anthropic_blocks(block.get("content") or "", f"{at}.content", role=role,
                                            call_ids=call_ids, inner=True)
            if any(type(b) is ImageBlock for b in inner_blocks):
                raise invalid(f"`{at}.content` has an image: a tool result carries text only through KiwiClaw "
                              "(OpenAI-compatible models take no images in tool results).", f"{at}.content")
            result = inner_blocks[0].text if len(inner_blocks) == 1 and inner_blocks[0].cache_control is None \
                else tuple(inner_blocks)
            blocks.append(ToolResultBlock(tool_use_id=call_id, content=result, is_error=bool(is_error),
                                          cache_control=cache))
    return blocks


def anthropic_messages(raw: list) -> list[ChatMessage]:
    messages: list[ChatMessage] = []
    call_ids: set[str] = set()
    for i, msg in enumerate(raw):
        where = f"messages.{i}"
        if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant"):
            raise invalid(f"`{where}.role` must be \"user\" or \"assistant\".", where)
        if "content" not in msg:
            raise invalid(f"`{where}.content` is required.", where)
        if len(msg) > 2:
            no_extra_keys(msg, ("role", "content"), where)
        content = msg["content"]
        if isinstance(content, str):
            messages.append(ChatMessage(role=msg["role"], content=content))  # the common case, kept lean
            continue
        blocks = anthropic_blocks(content, f"{where}.content", role=msg["role"], call_ids=call_ids)
        messages.append(message(msg["role"], blocks))
    return messages


def anthropic_system(system) -> tuple[str | None, tuple[TextBlock, ...] | None]:
    """(text, blocks): the blocks only when one carries a cache breakpoint."""
    if system is None or isinstance(system, str):
        return system or None, None
    if not isinstance(system, list):
        raise invalid("`system` must be a string or a list of text blocks.", "system")
    blocks = []
    for j, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise invalid(f"`system.{j}` must be a text block.", f"system.{j}")
        no_extra_keys(block, ("type", "text", "cache_control", "citations"), f"system.{j}")
        blocks.append(TextBlock(block["text"], cache_control(block.get("cache_control"),
                                                             f"system.{j}.cache_control")))
    text = "\n".join(b.text for b in blocks) or None
    return text, tuple(blocks) if any(b.cache_control for b in blocks) else None
