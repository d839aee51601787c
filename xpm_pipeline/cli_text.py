"""Text from outside (XPM's answers, change files, tenant names, stored errors) as the CLI prints it.

Rich reads ``[...]`` in printed strings as markup (a stray ``[/bold]`` is an exception) and passes
control characters to the terminal (``ESC [2J`` clears it, ``ESC ]0;...BEL`` retitles it, U+202E turns
the rest of a line around). ``safe`` makes such text inert and one line: markup escaped, every control
character shown as a visible escape such as ``\\x1b`` or ``\\n``.
"""

from __future__ import annotations

import re

from rich.markup import escape

# C0 (newline and tab included: one-line output stays one line), DEL, C1, and the bidi embeddings,
# overrides and isolates that reorder what follows them.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: object) -> str:
    """``text`` with every control character replaced by a visible escape (no markup escaping)."""
    return _CONTROL.sub(_visible, str(text))


def safe(text: object) -> str:
    """``text`` ready to be placed in a rich markup string or table cell: shown literally, on one line."""
    return escape(visible(text))


def safe_lines(text: object) -> str:
    """Like ``safe``, but keeps the line breaks of a message written to span lines (our own notices)."""
    return "\n".join(safe(line) for line in str(text).split("\n"))
