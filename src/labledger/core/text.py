"""What text and numbers a client may put into the ledger.

PostgreSQL text and JSON cannot hold NUL (SQLite stores it), so the same request must be
refused on both before either sees it. The other control characters, and lone surrogates,
are invisible in a report or a spreadsheet yet part of what is hashed and compared: an id
that looks like another is a way to pass for it. Integers travel in leaves as JSON, and a
verifier written in a language whose numbers are doubles reads those beyond 2^53 as others,
so it would derive other bytes than the ledger hashed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from labledger.core.errors import InvalidRequest, MalformedPayload

_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROLS_BUT_LAYOUT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
MAX_JSON_INTEGER = 2**53


def check_text(field: str, value: str | None, *, layout: bool = False) -> None:
    """Refuse control characters (but TAB, LF and CR where `layout`) and lone surrogates."""
    if value is None:
        return
    found = (_CONTROLS_BUT_LAYOUT if layout else _CONTROLS).search(value)
    if found is not None:
        raise MalformedPayload(
            f"{field} holds the control character U+{ord(found.group()):04X} at position "
            f"{found.start()}; remove it"
        )


def check_json_values(field: str, value: object) -> None:
    """check_text on every key and string (layout allowed), integers within ±2^53."""
    if isinstance(value, str):
        check_text(field, value, layout=True)
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        if abs(value) > MAX_JSON_INTEGER:
            raise InvalidRequest(
                f"{field} holds an integer beyond ±2^53, which verifiers in other languages "
                "read as another number; send it as a string"
            )
    elif isinstance(value, Mapping):
        for key, item in value.items():
            check_json_values(field, key)
            check_json_values(field, item)
    elif isinstance(value, list | tuple):
        for item in value:
            check_json_values(field, item)
