"""Control characters the engine refuses to keep in text.

PostgreSQL text cannot hold NUL, and control characters in ids, names and metadata break logs,
CSV files and the merchant's own systems.
"""

from __future__ import annotations

import re
from typing import Final

# C0 controls and DEL; tab, line feed and carriage return are ordinary whitespace in free text.
_CONTROL: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL_OR_WHITESPACE: Final = re.compile("[\x00-\x1f\x7f]")


def has_control_character(value: str, *, allow_whitespace: bool = True) -> bool:
    """True when ``value`` holds a C0 control character or DEL (tab, LF and CR allowed if asked)."""
    pattern = _CONTROL if allow_whitespace else _CONTROL_OR_WHITESPACE
    return pattern.search(value) is not None
