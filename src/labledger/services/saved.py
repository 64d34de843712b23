"""Saved deliveries: the request headers, a blank line, then the raw body, byte for byte.

`labledger ingest` reads this format; the body must stay byte-identical to what the forge
signed, which is why it is not wrapped in JSON. An optional request line
(`POST /webhooks/github HTTP/1.1`) before the headers is ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from labledger.core.errors import MalformedPayload

_REQUEST_LINE = re.compile(rb"^[A-Z]+ \S+ HTTP/\d(\.\d)?$")


def parse_saved_delivery(data: bytes) -> tuple[dict[str, str], bytes]:
    """Split a saved delivery into lower-cased headers and the raw body."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, found, body = data.partition(separator)
        if found:
            break
    else:
        raise MalformedPayload("saved delivery has no blank line between headers and body")
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    if lines and _REQUEST_LINE.match(lines[0]):
        lines = lines[1:]
    headers: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        name, colon, value = line.partition(b":")
        if not colon or not name.strip():
            raise MalformedPayload(f"header line {number} is not 'Name: value'")
        try:
            headers[name.strip().decode("ascii").lower()] = value.strip().decode("latin-1")
        except UnicodeDecodeError:
            raise MalformedPayload(f"header line {number} has a non-ASCII name") from None
    return headers, body


def format_saved_delivery(headers: Mapping[str, str], body: bytes) -> bytes:
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return head.encode("latin-1") + b"\r\n" + body
