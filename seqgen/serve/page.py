"""The playground page at ``GET /``: one HTML file with its script inline, nothing fetched from
elsewhere."""

from __future__ import annotations

import html


def page(name: str, music: bool, infill: bool) -> str:
    return _PAGE.replace("{{name}}", html.escape(name)).replace("{{music}}", "true" if music else "false")


_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>seqgen {{name}}</title></head>
<body><h1>seqgen: {{name}}</h1><p>The playground is not built yet; the API is at /v1/completions.</p></body></html>
"""
