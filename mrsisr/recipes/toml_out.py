"""Write recipes back as TOML (`mrsisr recipe show`, run cards): nested tables of scalars and lists."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["dumps_toml"]


# --------------------------------------------------------------------------- TOML output
def dumps_toml(data: Mapping[str, Any]) -> str:
    """Serialise nested dicts of scalars and lists to TOML.

    Enough for recipes (tomllib only reads): strings, booleans, integers, floats, lists of those,
    and nested tables.

    Args:
        data: Nested mappings.

    Returns:
        TOML text.
    """
    lines: list[str] = []

    def emit(prefix: str, table: Mapping[str, Any]) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, Mapping)}
        subtables = {k: v for k, v in table.items() if isinstance(v, Mapping)}
        if prefix and (scalars or not subtables):
            lines.append(f"[{prefix}]")
        for key, value in scalars.items():
            if value is None:
                continue
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
        if prefix and (scalars or not subtables):
            lines.append("")
        for key, value in subtables.items():
            emit(f"{prefix}.{_toml_key(key)}" if prefix else _toml_key(key), value)

    emit("", data)
    return "\n".join(lines).rstrip() + "\n"


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else _toml_value(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")
