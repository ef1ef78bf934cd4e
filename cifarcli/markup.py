"""Text from outside shown literally inside rich markup.

Every string the views show that comes from outside them (class names read from an archive,
paths, parameters and reasons from the cache, run names) goes through ``literal``: rich would
otherwise read ``[/]`` or ``[bold red]`` in it as markup, and crash or restyle.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape


def literal(value: Any) -> str:
    """``value`` as literal text inside rich markup."""
    return escape(str(value))
