"""Tools, tool_choice and structured output of both protocols, parsed into routing.types (ToolSpec, ToolChoice,
ResponseFormat); bad input is a ProxyError("invalid") naming the field.

Checked before any provider call: a tool needs a name (letters, digits, _ and -, at most 64: both APIs' rule) that
no other tool of the request has and that is not KiwiClaw's own structured-output tool; its parameters /
input_schema must be a JSON Schema (checked against the JSON Schema 2020-12 metaschema with the `jsonschema`
package) of type object; tool_choice may only name a tool of the request, and "required" / "any" needs tools.
A response_format's json_schema is checked against the metaschema the same way.
"""

import re

from jsonschema import Draft202012Validator, SchemaError

from routing.providers import JSON_TOOL
from routing.types import ResponseFormat, ToolChoice, ToolSpec

from .content import cache_control, invalid, no_extra_keys

_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")


def check_schema(schema, where: str, *, object_only: bool = True) -> dict:
    """A JSON Schema object (for a tool's input: of type object), or a 400 naming `where`."""
    if not isinstance(schema, dict):
        raise invalid(f"`{where}` must be a JSON Schema object.", where)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        path = "/".join(str(p) for p in exc.path)
        raise invalid(f"`{where}` is not a valid JSON Schema: {exc.message}" + (f" (at {path})" if path else ""),
                      where) from None
    if object_only and schema.get("type") != "object":
        raise invalid(f"`{where}` must be a JSON Schema of type \"object\" (a tool's input is an object).", where)
    return schema


def _name(name, where: str, seen: set) -> str:
    if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
        raise invalid(f"`{where}` is required: 1-64 letters, digits, underscores or hyphens.", where)
    if name == JSON_TOOL:
        raise invalid(f"`{where}` {name!r} is reserved by KiwiClaw (structured output).", where)
    if name in seen:
        raise invalid(f"`{where}` {name!r} names a second tool: tool names must be unique.", where)
    seen.add(name)
    return name


def _description(value, where: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise invalid(f"`{where}` must be a string.", where)
    return value


def _strict(value, where: str) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise invalid(f"`{where}` must be true or false.", where)
    return value


def _tool_choice_name(name: str, where: str, tools: tuple[ToolSpec, ...] | None) -> str:
    if not isinstance(name, str) or name not in {t.name for t in tools or ()}:
        raise invalid(f"`{where}` {name!r} names no tool of this request.", where)
    return name


# --- OpenAI ---


def openai_tools(data: dict) -> tuple[tuple[ToolSpec, ...] | None, ToolChoice | None, bool | None]:
    raw = data.get("tools")
    tools = None
    if raw not in (None, []):
        if not isinstance(raw, list):
            raise invalid("`tools` must be a list of function tools.", "tools")
        seen: set[str] = set()
        specs = []
        for i, tool in enumerate(raw):
            where = f"tools[{i}]"
            if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(tool.get("function"),
                                                                                             dict):
                raise invalid(f"`{where}` must be {{\"type\": \"function\", \"function\": {{...}}}} (only function "
                              "tools are supported).", where)
            no_extra_keys(tool, ("type", "function"), where)
            function = tool["function"]
            no_extra_keys(function, ("name", "description", "parameters", "strict"), f"{where}.function")
            parameters = function.get("parameters")
            specs.append(ToolSpec(
                name=_name(function.get("name"), f"{where}.function.name", seen),
                parameters=check_schema(parameters, f"{where}.function.parameters") if parameters is not None
                else {"type": "object", "properties": {}},
                description=_description(function.get("description"), f"{where}.function.description"),
                strict=_strict(function.get("strict"), f"{where}.function.strict"),
            ))
        tools = tuple(specs)
    choice = _openai_tool_choice(data.get("tool_choice"), tools)
    parallel = data.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise invalid("`parallel_tool_calls` must be true or false.", "parallel_tool_calls")
    return tools, choice, parallel


def _openai_tool_choice(value, tools) -> ToolChoice | None:
    if value is None:
        return None
    if value in ("auto", "none", "required"):
        if value == "required" and not tools:
            raise invalid("`tool_choice` \"required\" needs `tools`.", "tool_choice")
        return ToolChoice(value) if tools else None
    if isinstance(value, dict) and value.get("type") == "function" and isinstance(value.get("function"), dict):
        no_extra_keys(value, ("type", "function"), "tool_choice")
        no_extra_keys(value["function"], ("name",), "tool_choice.function")
        return ToolChoice("tool", _tool_choice_name(value["function"].get("name"), "tool_choice.function.name",
                                                    tools))
    raise invalid("`tool_choice` must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", "
                  "\"function\": {\"name\": ...}}.", "tool_choice")


def openai_response_format(value) -> ResponseFormat | None:
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        no_extra_keys(value, ("type",), "response_format")
        return None
    if kind == "json_object":
        no_extra_keys(value, ("type",), "response_format")
        return ResponseFormat("json_object")
    if kind == "json_schema" and isinstance(value.get("json_schema"), dict):
        no_extra_keys(value, ("type", "json_schema"), "response_format")
        spec = value["json_schema"]
        no_extra_keys(spec, ("name", "description", "schema", "strict"), "response_format.json_schema")
        name = spec.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
            raise invalid("`response_format.json_schema.name` is required: 1-64 letters, digits, underscores or "
                          "hyphens.", "response_format.json_schema.name")
        schema = spec.get("schema")
        return ResponseFormat(
            "json_schema",
            schema=check_schema(schema, "response_format.json_schema.schema") if schema is not None
            else {"type": "object"},
            name=name,
            description=_description(spec.get("description"), "response_format.json_schema.description"),
            strict=_strict(spec.get("strict"), "response_format.json_schema.strict"),
        )
    raise invalid("`response_format` must be {\"type\": \"text\"}, {\"type\": \"json_object\"} or "
                  "{\"type\": \"json_schema\", \"json_schema\": {...}}.", "response_format")


# --- Anthropic ---


def anthropic_tools(data: dict) -> tuple[tuple[ToolSpec, ...] | None, ToolChoice | None, bool | None]:
    raw = data.get("tools")
    tools = None
    if raw not in (None, []):
        if not isinstance(raw, list):
            raise invalid("`tools` must be a list of tools.", "tools")
        seen: set[str] = set()
        specs = []
        for i, tool in enumerate(raw):
            where = f"tools.{i}"
            if not isinstance(tool, dict) or tool.get("type") not in (None, "custom"):
                kind = tool.get("type") if isinstance(tool, dict) else None
                raise invalid(f"`{where}.type` {kind!r}: only client tools (with an input_schema) are supported, "
                              "no server tools.", f"{where}.type")
            no_extra_keys(tool, ("type", "name", "description", "input_schema", "cache_control", "strict"), where)
            specs.append(ToolSpec(
                name=_name(tool.get("name"), f"{where}.name", seen),
                parameters=check_schema(tool.get("input_schema"), f"{where}.input_schema"),
                description=_description(tool.get("description"), f"{where}.description"),
                strict=_strict(tool.get("strict"), f"{where}.strict"),
                cache_control=cache_control(tool.get("cache_control"), f"{where}.cache_control"),
            ))
        tools = tuple(specs)
    value = data.get("tool_choice")
    if value is None:
        return tools, None, None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind not in ("auto", "any", "tool", "none"):
        raise invalid("`tool_choice.type` must be auto, any, tool or none.", "tool_choice")
    no_extra_keys(value, ("type", "name", "disable_parallel_tool_use"), "tool_choice")
    disable = value.get("disable_parallel_tool_use")
    if disable is not None and (not isinstance(disable, bool) or kind == "none"):
        raise invalid("`tool_choice.disable_parallel_tool_use` must be true or false (not with type none).",
                      "tool_choice.disable_parallel_tool_use")
    parallel = None if disable is None else not disable
    if kind in ("any", "tool") and not tools:
        raise invalid(f"`tool_choice` {kind!r} needs `tools`.", "tool_choice")
    if not tools:
        return None, None, parallel
    if kind == "tool":
        return tools, ToolChoice("tool", _tool_choice_name(value.get("name"), "tool_choice.name", tools)), parallel
    return tools, ToolChoice({"any": "required"}.get(kind, kind)), parallel


def anthropic_output_format(value) -> ResponseFormat | None:
    """`output_config` of /v1/messages: its `format` (Anthropic's structured outputs, a json_schema) is
    structured output like OpenAI's response_format; `effort` is the tier's to choose."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid("`output_config` must be an object.", "output_config")
    if value.get("effort") is not None:
        raise invalid("`output_config.effort` is not supported by KiwiClaw: effort is chosen by the tier (use "
                      "model \"max\").", "output_config.effort")
    no_extra_keys(value, ("format", "effort"), "output_config")
    fmt = value.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        raise invalid("`output_config.format` must be {\"type\": \"json_schema\", \"schema\": {...}}.",
                      "output_config.format")
    no_extra_keys(fmt, ("type", "schema"), "output_config.format")
    return ResponseFormat("json_schema", schema=check_schema(fmt.get("schema"), "output_config.format.schema",
                                                             object_only=False))
