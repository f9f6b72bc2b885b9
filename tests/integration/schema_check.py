"""A tiny JSON Schema checker: just the keywords event.schema.json uses (no jsonschema package).

Supported: type (incl. lists and "null"), required, properties, additionalProperties (false),
enum, items, minItems, maxItems, anyOf, local $ref ("#/$defs/..."). Unknown keywords fail loudly
so the schema cannot silently outgrow the checker.
"""

from __future__ import annotations

from typing import Any

_TYPES: dict[str, Any] = {
    "null": type(None), "boolean": bool, "string": str, "object": dict, "array": list,
    "number": (int, float), "integer": int,
}
_KNOWN = {"$schema", "$defs", "$ref", "title", "description", "type", "required", "properties",
          "additionalProperties", "enum", "items", "minItems", "maxItems", "anyOf"}


def _is(value: Any, name: str) -> bool:
    if isinstance(value, bool) and name in ("number", "integer"):
        return False
    return isinstance(value, _TYPES[name])


def errors(value: Any, schema: dict[str, Any], root: dict[str, Any] | None = None,
           where: str = "$") -> list[str]:
    """Every violation as 'path: reason'; empty when `value` conforms."""
    root = root if root is not None else schema
    unknown = set(schema) - _KNOWN
    assert not unknown, f"schema_check does not support {sorted(unknown)}"
    if "$ref" in schema:
        node: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        return errors(value, node, root, where)
    if "anyOf" in schema and all(errors(value, s, root, where) for s in schema["anyOf"]):
        return [f"{where}: matches none of anyOf"]
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else types
        if not any(_is(value, t) for t in names):
            return [f"{where}: expected {'/'.join(names)}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} not in {schema['enum']}"]
    out: list[str] = []
    if isinstance(value, dict):
        out += [f"{where}: missing {k!r}" for k in schema.get("required", []) if k not in value]
        props = schema.get("properties", {})
        for key, item in value.items():
            if key in props:
                out += errors(item, props[key], root, f"{where}.{key}")
            elif schema.get("additionalProperties") is False:
                out.append(f"{where}: unexpected {key!r}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            out.append(f"{where}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            out.append(f"{where}: more than {schema['maxItems']} items")
        if "items" in schema:
            for i, item in enumerate(value):
                out += errors(item, schema["items"], root, f"{where}[{i}]")
    return out
