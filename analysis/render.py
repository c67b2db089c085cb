"""Report pages: markdown from the jinja2 templates in ``analysis/templates``, HTML from it.

A report module gathers its tables (markdown text), numbers and
:class:`Figure` entries and renders one template; :func:`write_report`
writes ``report.md`` and, through the ``markdown`` package (tables and
fenced code), ``report.html``.
"""

from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import markdown
from jinja2 import Environment, PackageLoader, StrictUndefined

_log = logging.getLogger(__name__)

_ENV = Environment(loader=PackageLoader("analysis", "templates"), undefined=StrictUndefined,
                   trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                   autoescape=False)   # markdown out, not HTML: nothing to escape

_STYLE = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;"
          "padding:0 1em;line-height:1.45;color:#222}table{border-collapse:collapse;"
          "margin:1em 0;font-size:0.9em}td,th{border:1px solid #ccc;padding:3px 8px;"
          "text-align:left}th{background:#f2f2f2}img{max-width:100%;border:1px solid #eee}"
          "code{background:#f5f5f5;padding:0 3px}pre{background:#f5f5f5;padding:1em;"
          "overflow:auto;font-size:0.85em}")


@dataclass(frozen=True)
class Figure:
    """A figure section: heading, PNG file name, caption and markdown blocks after it."""

    title: str
    fname: str
    caption: str
    extra: tuple[str, ...] = ()


def say(msg: str, quiet: bool) -> None:
    """A status line (INFO on this module's logger) unless ``quiet``."""
    if not quiet:
        _log.info(msg)


def software_version() -> str:
    from abm.version import __version__
    return __version__


def render_markdown(template: str, **context) -> str:
    """The markdown of a template (``<name>.md.j2``), ending in one newline."""
    return _ENV.get_template(template).render(**context).rstrip() + "\n"


def markdown_to_html(text: str, title: str = "abm report") -> str:
    """A standalone HTML page of report markdown; its title is the first heading."""
    m = re.match(r"#\s+(.*)", text)
    title = m.group(1).replace("`", "") if m else title
    body = markdown.markdown(text, extensions=["tables", "fenced_code"])
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title><style>{_STYLE}</style></head><body>\n{body}\n</body></html>\n")


def write_report(out: Path, text: str, html_page: bool, quiet: bool, n_figs: int) -> Path:
    """Write ``report.md`` (and ``report.html``) into ``out``; returns the markdown file."""
    path = out / "report.md"
    path.write_text(text, encoding="utf-8")
    if html_page:
        (out / "report.html").write_text(markdown_to_html(text), encoding="utf-8")
    say(f"wrote {path} ({n_figs} figures{', report.html' if html_page else ''})", quiet)
    return path


__all__ = ["Figure", "say", "software_version", "render_markdown", "markdown_to_html",
           "write_report"]
