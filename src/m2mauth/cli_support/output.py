"""Printing protobuf messages: aligned tables for people, JSON or one value for scripts.

JSON is the proto3 JSON mapping with the proto's own field names
(``MessageToDict(preserving_proto_field_name=True)``), so scripts see the same
names as the .proto files and every other client: stable, documented, and
without fields at their default value (as the mapping specifies). A list is
one JSON array of all its items.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC
from typing import Any

import click
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from m2mauth.cli_support.failure import usage_failure
from m2mauth.cli_support.options import Output

# (header, proto field name) pairs for list tables.
Columns = Sequence[tuple[str, str]]

EMPTY_CELL = "-"


def to_dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def echo_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def show_one(out: Output, message: Message) -> None:
    """One resource: its --field value, its JSON, or a two-column table of every field."""
    if out.field:
        click.echo(field_text(message, _known_field(message, out.field), script=True))
    elif out.format == "json":
        echo_json(to_dict(message))
    else:
        click.echo(render_table(field_rows(message)))


def field_rows(message: Message) -> list[tuple[str, str]]:
    """(field name, text) for every field, in .proto order."""
    return [
        (name, field_text(message, name) or EMPTY_CELL)
        for name in message.DESCRIPTOR.fields_by_name
    ]


def show_list(out: Output, messages: Sequence[Message], columns: Columns, noun: str) -> None:
    """Many resources: a JSON array, or a table with a header row."""
    if out.format == "json":
        echo_json([to_dict(m) for m in messages])
        return
    if not messages:
        click.echo(f"no {noun}", err=True)
        return
    rows = [[field_text(m, name) or EMPTY_CELL for _, name in columns] for m in messages]
    click.echo(render_table([[header for header, _ in columns], *rows]))


def render_table(rows: Sequence[Sequence[str]]) -> str:
    """Columns left-aligned and two spaces apart; no trailing blanks."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _known_field(message: Message, name: str) -> str:
    names = list(message.DESCRIPTOR.fields_by_name)
    if name not in names:
        raise usage_failure(f"no field {name!r}: --field takes one of {', '.join(names)}")
    return name


def field_text(message: Message, name: str, *, script: bool = False) -> str:
    """A field's value as text: "" when unset; lists comma-separated (space for scripts).

    Times are RFC 3339 in UTC (to the second in tables, exact for scripts),
    enums lose their type prefix (SIGNING_KEY_STATE_CURRENT -> CURRENT).
    """
    fd = message.DESCRIPTOR.fields_by_name[name]
    value = getattr(message, name)
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        text = ", ".join(f"{k}={v}" for k, v in sorted(value.items()))
    elif fd.is_repeated:
        text = (" " if script else ", ").join(str(v) for v in value)
    elif fd.has_presence and not message.HasField(name):
        text = ""
    elif fd.message_type is not None:
        text = _message_text(fd.message_type, value, script=script)
    elif fd.enum_type is not None:
        text = enum_text(fd.enum_type, value)
    elif fd.type == FieldDescriptor.TYPE_BOOL:
        text = "true" if value else "false"
    else:
        text = str(value)
    return text


def _message_text(descriptor: Any, value: Any, *, script: bool) -> str:
    if descriptor.full_name == "google.protobuf.Timestamp":
        if script:
            return str(value.ToJsonString())
        return str(value.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return json.dumps(to_dict(value), separators=(",", ":"))


def enum_text(descriptor: Any, number: int) -> str:
    """An enum value's name without its type prefix; ``descriptor`` an EnumDescriptor."""
    prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", descriptor.name).upper() + "_"
    value = descriptor.values_by_number.get(number)
    if value is None:
        return str(number)
    return str(value.name).removeprefix(prefix)
