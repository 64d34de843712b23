"""One small error hierarchy, translated once at the HTTP edge and once in the CLI."""

from __future__ import annotations

from collections.abc import Sequence


class LedgerError(Exception):
    """Base of everything labledger refuses on purpose."""


class MalformedPayload(LedgerError):
    """The body is authenticated but not a usable event (HTTP 400)."""

    def __init__(self, problem: str, location: str | None = None) -> None:
        self.problem = problem
        self.location = location
        super().__init__(f"{location}: {problem}" if location else problem)


class SignatureRejected(LedgerError):
    """Missing, malformed or wrong webhook signature (HTTP 401)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class RepositoryShared(LedgerError):
    """A second session of one lab on one repository, not asked for (HTTP 409)."""

    def __init__(self, lab_id: str, repository_id: int, session_id: int) -> None:
        self.lab_id, self.repository_id, self.session_id = lab_id, repository_id, session_id
        super().__init__(
            f"session {session_id} of lab {lab_id!r} already records repository "
            f"{repository_id}; its commits would count for both sessions. Pass "
            "allow_shared_repository (true, or --allow-shared-repository) if that is meant"
        )


class Unauthorized(LedgerError):
    """An API request without a known bearer token (HTTP 401, `unauthorized`)."""


class BodyTooLarge(LedgerError):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"request body exceeds the limit of {limit} bytes")


class BodyTimeout(LedgerError):
    """The sender did not finish the body in time (HTTP 408); nothing was recorded."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(
            f"request body not received within {seconds:g} s (LABLEDGER_BODY_TIMEOUT_SECONDS); "
            "nothing was recorded: send the delivery again"
        )


class NotJson(LedgerError):
    def __init__(self, content_type: str | None) -> None:
        self.content_type = content_type
        super().__init__(
            f"content type {content_type or '(none)'!r} is not application/json; "
            "set the webhook's content type to application/json"
        )


class DeliveryConflict(LedgerError):
    """The same delivery id from the same hook arrived with another body (HTTP 409)."""

    def __init__(self, delivery_id: str, stored_sha256: bytes, received_sha256: bytes) -> None:
        self.delivery_id = delivery_id
        self.stored_sha256 = stored_sha256
        self.received_sha256 = received_sha256
        super().__init__(
            f"delivery {delivery_id} was already recorded with a different body "
            f"(sha256:{stored_sha256.hex()}, this one sha256:{received_sha256.hex()})"
        )


class DeliveryAlreadyRecorded(LedgerError):
    """Raised by a store when UNIQUE(forge, delivery_id) rejects an insert."""


class BodyReplayed(LedgerError):
    """Raised inside a delivery's transaction when its body is already recorded under
    another delivery id: a replay, to be rolled back and answered as a duplicate."""

    def __init__(self, delivery_id: str) -> None:
        self.delivery_id = delivery_id
        super().__init__(f"the body of delivery {delivery_id} was already recorded")


class Forbidden(LedgerError):
    """An authenticated caller without the scope a route needs (HTTP 403)."""

    def __init__(self, needed: str, held: str) -> None:
        self.needed = needed
        self.held = held
        super().__init__(f"this route needs the {needed} scope; the token has {held}")


class VerificationConflict(LedgerError):
    """The same (attempt, verifier, run id) was reported before with another result (HTTP 409)."""

    def __init__(self, attempt_id: int, verifier: str, run_id: str) -> None:
        self.attempt_id = attempt_id
        self.verifier = verifier
        self.run_id = run_id
        super().__init__(
            f"verifier {verifier!r} run {run_id!r} already reported another result "
            f"for attempt {attempt_id}; results are never overwritten (use a new run id)"
        )


class NotFound(LedgerError):
    def __init__(self, kind: str, key: object) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} {key} not found")


class InvalidRequest(LedgerError):
    """A well-formed request that asks for something impossible (HTTP 422)."""


class StoreUnavailable(LedgerError):
    """The database cannot be reached or is locked; retry later (HTTP 503)."""


class MalformedInput(LedgerError):
    """A file handed to labledger (a receipt, an export) that is not what it must be: the
    CLI answers it in one line with exit status 2."""


class ConfigError(Exception):
    """A setting is missing or invalid; the message names it and says how to fix it.

    Not a LedgerError: it is the operator's set-up, not something the ledger refuses, so code
    that answers refusals one by one (ingest, the HTTP map) lets it stop the command."""


class FileRefused(MalformedInput):
    """A file or folder labledger will not read (or write through): exit status 2."""


class ExportRefused(LedgerError):
    """An export that cannot be written or checked as asked; the message says why."""


class MaintenanceRefused(LedgerError):
    """The connection may not remove anything: it is not the schema owner's."""


class NotYetLogged(LedgerError):
    """The entry exists but no checkpoint covers it yet (or it does not exist)."""

    def __init__(self, kind: str, entry_id: int) -> None:
        self.kind = kind
        self.entry_id = entry_id
        super().__init__(
            f"{kind} {entry_id} is not covered by a signed checkpoint yet; "
            "retry in a few seconds (or run `labledger integrate`)"
        )


class UnreadableRows(LedgerError):
    """Rows of which one holds a value labledger never writes and its readers refuse."""

    def __init__(self, table: str, ids: Sequence[int], reason: BaseException) -> None:
        super().__init__(
            f"{table} rows {min(ids)}-{max(ids)}: one holds a value labledger cannot read "
            f"({reason}); run `labledger verify` to name it"
        )


class LedgerOriginUnknown(LedgerError):
    def __init__(self, rows: int) -> None:
        self.rows = rows
        super().__init__(
            f"the ledger records {rows} origins instead of one (table ledger_origin); "
            "it has been tampered with or was not migrated by labledger"
        )


class GitHubUnavailable(Exception):
    """GitHub could not be reached or kept refusing after every retry; says which request.

    Not a LedgerError: the ledger refused nothing, a dependency is down."""


class RetentionRefused(LedgerError):
    """An archive, purge or erasure that cannot be done as asked; nothing was changed."""


class MalformedReceipt(MalformedInput):
    """Not a labledger receipt at all (unreadable, wrong shape or format)."""


class ReceiptRejected(LedgerError):
    """A receipt whose `field` does not check out: it was edited, or never signed."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class NoteRejected(LedgerError):
    """A signed note that cannot be trusted."""


class MalformedNote(NoteRejected):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"malformed signed note: {reason}")


class BadSignature(NoteRejected):
    """The note carries a signature line of the trusted key that does not verify."""

    def __init__(self, key_name: str, key_id: bytes) -> None:
        self.key_name = key_name
        self.key_id = key_id
        super().__init__(f"invalid signature by key {key_name}+{key_id.hex()}")


class MissingSignature(NoteRejected):
    """No signature line of the note belongs to the trusted key."""

    def __init__(self, key_name: str, key_id: bytes) -> None:
        self.key_name = key_name
        self.key_id = key_id
        super().__init__(f"the note is not signed by key {key_name}+{key_id.hex()}")


class MalformedKey(LedgerError):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"malformed note key: {reason}")


class MalformedCheckpoint(NoteRejected):
    """A correctly signed note whose text is not a checkpoint; `line` counts from 1."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        self.reason = reason
        self.line = line
        where = f"line {line}: " if line is not None else ""
        super().__init__(f"malformed checkpoint: {where}{reason}")


class WrongOrigin(NoteRejected):
    """A valid checkpoint of another log signed by the same key."""

    def __init__(self, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"checkpoint of log {actual!r}, expected {expected!r}")


class InvalidProof(LedgerError):
    """A Merkle proof that does not prove what it claims."""


class InvalidInclusionProof(InvalidProof):
    def __init__(self, index: int, tree_size: int, reason: str) -> None:
        self.index = index
        self.tree_size = tree_size
        self.reason = reason
        super().__init__(f"inclusion proof of leaf {index} in tree of size {tree_size}: {reason}")


class InvalidConsistencyProof(InvalidProof):
    def __init__(self, old_size: int, new_size: int, reason: str) -> None:
        self.old_size = old_size
        self.new_size = new_size
        self.reason = reason
        super().__init__(f"consistency proof from size {old_size} to {new_size}: {reason}")


class UnknownLeafKind(ValueError):
    pass
