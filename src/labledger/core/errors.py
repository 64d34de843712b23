"""One small error hierarchy, translated once at the HTTP edge and once in the CLI."""

from __future__ import annotations


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
