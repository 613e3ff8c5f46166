"""The development tools' pages: files under `templates/`, filled in with `string.Template`.

Values are escaped by the caller (`escape`) before they are filled in; a template's final newline is
not part of it.
"""

from __future__ import annotations

import html
from functools import cache
from importlib.resources import files
from string import Template


@cache
def asset(name: str) -> str:
    """The text of `templates/<name>`, as is (a script, a page)."""
    return files(__package__).joinpath("templates", name).read_text(encoding="utf-8").removesuffix("\n")


def render(name: str, **values: object) -> str:
    """`templates/<name>` with its `$placeholders` filled in; a missing value is an error."""
    return Template(asset(name)).substitute(values)


def escape(text: object) -> str:
    return html.escape(str(text), quote=True)
