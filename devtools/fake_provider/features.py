"""What the fake provider does beyond text, the same way for both wire dialects: tool calls, structured output,
images, and Anthropic's prompt-cache accounting. Deterministic: the same request (and the same earlier requests,
for the cache) gets the same answer.

Tool calls: when a request has tools it calls one (the forced or named one, else the first), with arguments made
from the tool's schema (`sample`), unless tool_choice is none, or the last message is a tool result and no tool
is forced (then it answers text). The scenario's `tool_calls` ([{"name": ..., "arguments": {...}}, ...]) chooses
the calls instead, several at once for parallel calls (only the first when the request disables parallel calls).

Cache (Anthropic dialect): the prompt is a sequence of units in the API's cache order (tools, system, messages'
blocks); a unit's tokens are its words (a message's first unit one more, as prompt_tokens counts). With a
`cache_control` breakpoint, the prefix up to the last breakpoint is looked up per model: the longest prefix an
earlier request cached at one of its breakpoints is read (cache_read_input_tokens), the rest of the prefix is
written (cache_creation_input_tokens), and input_tokens is what follows the breakpoint, as Anthropic reports.
"""

from __future__ import annotations

import hashlib
import json
import re


def sample(schema) -> object:
    """A value valid for a simple JSON Schema (types, properties, required, enum, const, items, minimums)."""
    if not isinstance(schema, dict):
        return "kiwi"
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return sample(schema[key][0])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        props = schema.get("properties") or {}
        return {name: sample(sub) for name, sub in props.items()}
    if kind == "array":
        return [sample(schema.get("items")) for _ in range(max(1, int(schema.get("minItems", 1))))]
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1.5))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return "kiwi"


def compact(value) -> str:
    return json.dumps(value, separators=(",", ":"))


def fragments(text: str) -> list[str]:
    """How the fake streams a JSON text: pieces of up to 8 characters (each one output token)."""
    return re.findall(r".{1,8}", text, re.S) or [""]


def _tools(payload: dict, dialect: str) -> list[tuple[str, dict]]:
    out = []
    for tool in payload.get("tools") or ():
        if dialect == "openai":
            function = tool.get("function") or {}
            out.append((function.get("name", ""), function.get("parameters") or {}))
        else:
            out.append((tool.get("name", ""), tool.get("input_schema") or {}))
    return out


def _after_tool_result(messages: list, dialect: str) -> bool:
    if not messages:
        return False
    last = messages[-1]
    if dialect == "openai":
        return last.get("role") == "tool"
    content = last.get("content")
    return isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)


def tool_calls(payload: dict, dialect: str, scenario: dict, messages: list) -> list[tuple[str, str]]:
    """[(tool name, arguments JSON text)] the answer calls; [] for a text answer."""
    tools = _tools(payload, dialect)
    if not tools:
        return []
    choice = payload.get("tool_choice")
    named = None  # the tool the request names
    if dialect == "openai":
        if choice == "none":
            return []
        named = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
        must = named is not None or choice == "required"
        parallel = payload.get("parallel_tool_calls") is not False
    else:
        kind = (choice or {}).get("type")
        if kind == "none":
            return []
        named = choice.get("name") if kind == "tool" else None
        must = kind in ("tool", "any")
        parallel = not (choice or {}).get("disable_parallel_tool_use")
    if not must and _after_tool_result(messages, dialect):
        return []
    wanted = [(c["name"], compact(c.get("arguments", {}))) for c in scenario.get("tool_calls") or ()]
    if wanted and (named is None or any(name == named for name, _ in wanted)):
        calls = wanted
    else:
        name = named or tools[0][0]
        calls = [(name, compact(sample(dict(tools).get(name, {}))))]
    return calls if parallel else calls[:1]


def json_answer(payload: dict, scenario: dict) -> str | None:
    """The text of an OpenAI-dialect answer to a response_format json_object / json_schema request."""
    fmt = payload.get("response_format") or {}
    if fmt.get("type") not in ("json_object", "json_schema") or scenario.get("text") is not None:
        return None
    if fmt["type"] == "json_object":
        return compact({"answer": "kiwi"})
    return compact(sample((fmt.get("json_schema") or {}).get("schema") or {"type": "object"}))


def count_images(messages: list) -> int:
    count = 0
    for message in messages:
        content = message.get("content")
        for block in content if isinstance(content, list) else ():
            if isinstance(block, dict) and block.get("type") in ("image", "image_url"):
                count += 1
            elif isinstance(block, dict) and isinstance(block.get("content"), list):
                count += count_images([block])
    return count


def _words(value) -> int:
    return len(value.split()) if isinstance(value, str) else len(compact(value).split())


def _units(payload: dict, tools: list) -> list[tuple[int, bool, object]]:
    """(tokens, has a breakpoint, the unit) per cacheable unit, in cache order. A string is the same unit as one
    text block holding it (the prompt is the same), and a block's cache_control is not part of its content."""
    units = []

    def add(tokens, block, role=None):
        plain = {k: v for k, v in block.items() if k != "cache_control"}
        if role is not None:
            plain["role"] = role
        units.append((tokens, bool(block.get("cache_control")), plain))

    for tool in tools:
        add(_words({k: v for k, v in tool.items() if k != "cache_control"}), tool)
    system = payload.get("system")
    for block in system if isinstance(system, list) else [{"type": "text", "text": system}] if system else ():
        add(_words(block.get("text", "")), block)
    for message in payload.get("messages") or ():
        content = message.get("content")
        blocks = content if isinstance(content, list) else [{"type": "text", "text": content or ""}]
        for i, block in enumerate(blocks):
            kind = block.get("type")
            text = block.get("text") if kind == "text" else block.get("input") if kind == "tool_use" \
                else block.get("content", "") if kind == "tool_result" else ""
            add(_words(text or "") + (1 if i == 0 else 0), block, message.get("role"))
    return units


class PromptCache:
    """Anthropic's prompt cache, per model: the hashes of the prefixes earlier requests cached."""

    def __init__(self):
        self.prefixes: set[str] = set()

    def clear(self) -> None:
        self.prefixes.clear()

    def usage(self, model: str, payload: dict) -> tuple[int, int, int]:
        """(input, cache read, cache write) tokens of an Anthropic-dialect request."""
        units = _units(payload, list(payload.get("tools") or ()))
        total = sum(u[0] for u in units)
        marks = [i for i, u in enumerate(units) if u[1]]
        if not marks:
            return total, 0, 0
        hashes, h = [], hashlib.sha256(model.encode())
        for unit in units:
            h = h.copy()
            h.update(compact(unit[2]).encode())
            hashes.append(h.hexdigest())
        last = marks[-1]
        prefix = sum(u[0] for u in units[:last + 1])
        read = 0
        for j in range(last, -1, -1):
            if hashes[j] in self.prefixes:
                read = sum(u[0] for u in units[:j + 1])
                break
        self.prefixes.update(hashes[i] for i in marks)
        return total - prefix, read, prefix - read
