"""Text from files and stores made safe to show: on a terminal (no escape sequences) and in Markdown (no markup).

A suite's ``name:``, a prompt id, a preset name or a stored error is data a user may not have written; printed raw,
``\\x1b]0;...\\x07`` retitles the terminal, ``\\x1b[2J`` clears it, ``\\r`` overwrites the line before it and a bidi
override reverses what follows. :func:`printable` shows such characters as ``\\x..`` escapes instead.
"""

from __future__ import annotations

import html
import re

# C0 controls but tab and newline, DEL, C1 controls, and the Unicode bidi embeddings/overrides/isolates and marks.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# Markdown punctuation that acts anywhere ('(' needs a ']' before it to make a link, so escaped brackets suffice);
# '_' only at a word edge (intraword '_' never emphasises, so config names stay readable); '#', '-', '+', '>' and
# "1. " only at the start.
_MARKDOWN = re.compile(r"([\\`*{}\[\]!|~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])|^[#+>-])")


def _escape(m: re.Match) -> str:
    ch = m.group(0)
    return f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"


def printable(text: object, keep_newlines: bool = False) -> str:
    """``text`` with control characters shown as ``\\x..``/``\\u....`` escapes (newlines too unless kept)."""
    s = _CONTROL.sub(_escape, str(text))
    return s if keep_newlines else s.replace("\n", "\\n")


def markdown_text(text: object) -> str:
    """``text`` as literal Markdown inline text: one line, HTML special characters as entities, Markdown
    punctuation backslash-escaped (so a prompt cannot add a link, an image, a heading or raw HTML)."""
    s = printable(text).replace("\t", " ")
    s = _MARKDOWN.sub(lambda m: "\\" + m.group(0), html.escape(s, quote=False))
    return re.sub(r"^(\d+)([.)])(?=\s|$)", r"\1\\\2", s)  # "1. " or "1) " would start an ordered list
