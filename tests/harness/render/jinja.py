"""The Jinja2 environment of the page and the summary: templates/ beside this file."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from . import layout
from .text import (
    HANDLER_COLUMNS,
    conclusion_text,
    handler_figures,
    outcome,
    protocol_counts,
)

TEMPLATES = Path(__file__).parent / "templates"


def md_cell(text: object, limit: int = 240) -> str:
    """Text for one cell of a Markdown table: one line, no pipe, at most `limit` characters."""
    text = " ".join(str(text).split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def seconds(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f} s"


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        undefined=StrictUndefined,
        autoescape=select_autoescape(["html", "html.j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals.update(
        layout=layout,
        conclusion_text=conclusion_text,
        protocol_counts=protocol_counts,
        outcome=outcome,
        handler_figures=handler_figures,
        handler_columns=HANDLER_COLUMNS,
        read=lambda name: (TEMPLATES / name).read_text(),
    )
    env.filters.update(md=md_cell, seconds=seconds, onoff=layout.on)
    return env
