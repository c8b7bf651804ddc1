"""The defaults ``m2mauth serve`` declares, for tests that read the README's examples."""

from __future__ import annotations

import dataclasses

from m2mauth.config import Settings


def setting_default(name: str) -> object:
    """The default of the setting ``name``, as declared on ``Settings``."""
    for field in dataclasses.fields(Settings):
        if field.name == name:
            return field.default
    raise KeyError(name)
