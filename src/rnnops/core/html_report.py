"""Reports as one self-contained HTML file: the markdown rendered, its figures inlined.

The markdown is rendered by markdown-it-py (CommonMark with tables); figures the markdown
links by relative path are embedded as data URIs, so the file opens anywhere (an MLflow
artifact view, a Prefect artifact link, a mail attachment) with its pictures.
"""

from __future__ import annotations

import base64
import html

STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
    "padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}"
    "img{max-width:100%}"
)


def markdown_to_html(markdown: str, images: dict[str, bytes], title: str) -> str:
    """``markdown`` as an HTML page; ``images`` maps each figure's link target to its PNG."""
    from markdown_it import MarkdownIt

    renderer = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = renderer.parse(markdown)
    for token in tokens:
        for child in token.children or ():
            target = child.attrGet("src") if child.type == "image" else None
            if target in images:
                data = base64.b64encode(images[target]).decode("ascii")
                child.attrSet("src", f"data:image/png;base64,{data}")
    body = renderer.renderer.render(tokens, renderer.options, {})
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>\n"
        + body
        + "</body></html>\n"
    )
