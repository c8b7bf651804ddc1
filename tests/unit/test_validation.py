"""Names and descriptions refuse characters that change how text looks without
being seen: control, bidirectional and zero-width characters."""

from __future__ import annotations

import pytest

from m2mauth.core import validation
from m2mauth.core.errors import InvalidField

BIDI = [chr(c) for c in range(0x202A, 0x202F)] + [chr(c) for c in range(0x2066, 0x206A)]
BIDI += ["\u200e", "\u200f", "\u061c"]
ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"]
OTHER_INVISIBLE = ["\u00ad", "\U000e0041", "\u2028", "\u2029"]  # soft hyphen, tag A, separators


@pytest.mark.parametrize(
    "char", BIDI + ZERO_WIDTH + OTHER_INVISIBLE, ids=lambda c: f"U+{ord(c):04X}"
)
@pytest.mark.parametrize(
    "check",
    [
        lambda v: validation.name("organization.name", v),
        lambda v: validation.optional_text("organization.name", v, 2000),
    ],
    ids=["name", "description"],
)
def test_invisible_and_direction_characters_are_refused_naming_the_field(
    char: str, check: object
) -> None:
    with pytest.raises(InvalidField) as info:
        check(f"Acme{char}Corp")  # type: ignore[operator]
    assert info.value.field == "organization.name"
    assert f"U+{ord(char):04X}" in info.value.message
    assert "invisible or text-direction" in info.value.message


@pytest.mark.parametrize(
    "value", ["Acme Corp", "Café Müller", "株式会社", "Ünïcödé \u2013 ok", "شركة"]
)
def test_ordinary_text_in_any_script_is_accepted(value: str) -> None:
    assert validation.name("organization.name", value) == value
    assert validation.optional_text("application.description", value + "\nmore", 2000)


def test_control_characters_are_still_refused() -> None:
    for char in ("\x00", "\x1b", "\x7f", "\x85"):
        with pytest.raises(InvalidField, match="control characters"):
            validation.name("admin_key.name", f"a{char}b")
