"""The plain reading of the leaf format (docs/verification.md): a generic walk of the values,
then `json.dumps`. An oracle for the one encoder, core/leaves.py, which must write the same
bytes for any row."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from labledger.core.leaves import LEAF_VERSION, _fields, canonical_json, personal_commitment


def reference_leaf_bytes(kind: str, row: Mapping[str, Any]) -> bytes:
    """The canonical bytes of one entry, by the generic path that defines them."""
    fields, personal = _fields(kind)
    content = {name: row[name] for name in fields}
    if personal:
        commitment = row.get("personal_sha256")
        if commitment is None:
            salt = bytes(row.get("personal_salt") or b"")
            commitment = personal_commitment(salt, {n: row[n] for n in personal})
        content["personal_sha256"] = commitment
    return f"{LEAF_VERSION}\n{kind}\n".encode() + canonical_json(content)
