"""Settings, read once at the edge from a mapping (the environment) and an optional file."""

from __future__ import annotations

import base64
import binascii
import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from labledger.core.note import MalformedKey, SignerKey
from labledger.forges.github_api import hook_base

PREFIX = "LABLEDGER_"
# Names the test and benchmark suites use for themselves; never settings of the service.
RESERVED_PREFIXES = (f"{PREFIX}TEST_", f"{PREFIX}BENCH_")
GITHUB_MAX_BODY_BYTES = 25 * 1024 * 1024  # GitHub does not deliver larger payloads.
DEFAULT_DATABASE_URL = "sqlite:///labledger.db"
MAX_RETENTION_DAYS = 100 * 366
DISCOVERY = re.compile(r"^[\w.-]+/[^=,]+=[^=,]+$")


# Each scope includes the ones before it: admin ⊇ grader ⊇ read.
SCOPES = ("read", "grader", "admin")


class ConfigError(Exception):
    """A setting is missing or invalid; the message names it and says how to fix it."""


class Subscriber(BaseModel):
    """A notification receiver: events are signed with its Standard Webhooks `whsec_` secret."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:/-]+$")
    url: str = Field(pattern=r"^https?://")
    secret: SecretStr

    @field_validator("secret")
    @classmethod
    def _whsec(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        body = raw.removeprefix("whsec_")
        try:
            if raw == body or not base64.b64decode(body, validate=True):
                raise ValueError
        except (ValueError, binascii.Error):
            raise ValueError("a subscriber secret is whsec_ followed by base64") from None
        return value


def parse_subscribers(text: str) -> list[dict[str, str]] | list[object]:
    """A JSON list of {name, url, secret}, or comma-separated `name=url|secret` / `url|secret`."""
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        loaded = json.loads(text)
        return loaded if isinstance(loaded, list) else [loaded]
    found = []
    for entry in (e.strip() for e in text.split(",") if e.strip()):
        target, _, secret = entry.partition("|")
        name, eq, url = target.partition("=")
        if not eq:
            name, url = target, target
        found.append({"name": name[:100], "url": url, "secret": secret})
    return found


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    database_url: str = DEFAULT_DATABASE_URL
    github_webhook_secret: SecretStr | None = None
    api_tokens: tuple[SecretStr, ...] = ()
    max_body_bytes: int = Field(default=GITHUB_MAX_BODY_BYTES, gt=0)
    body_timeout_seconds: float = Field(default=30.0, gt=0)
    signing_key_file: Path = Path("labledger-signing.key")
    integrate_interval_seconds: float = Field(default=1.0, gt=0)
    # Where `serve` integrates the Merkle log (http/integrator.py): auto, process, thread, none.
    integrator: Literal["auto", "process", "thread", "none"] = "auto"
    log_level: str = "INFO"
    subscribers: tuple[Subscriber, ...] = ()
    dispatch_interval_seconds: float = Field(default=1.0, gt=0)
    dispatch_max_attempts: int = Field(default=8, ge=1, le=100)
    dispatch_backoff_seconds: float = Field(default=2.0, gt=0)
    dispatch_timeout_seconds: float = Field(default=10.0, gt=0)
    # Retention windows in days, counted from a session's close (RETENTION.md).
    retention_records_days: int = Field(default=5 * 365 + 1, ge=1, le=MAX_RETENTION_DAYS)
    retention_raw_bodies_days: int = Field(default=90, ge=1, le=MAX_RETENTION_DAYS)
    retention_audit_days: int = Field(default=7 * 365 + 2, ge=1, le=MAX_RETENTION_DAYS)
    # The connection `purge` and `erase` use: the schema owner on PostgreSQL, never the
    # server's SELECT/INSERT role. Defaults to LABLEDGER_DATABASE_URL.
    maintenance_database_url: str | None = None
    # Reconciliation with GitHub's REST API (README "When labledger was down").
    github_api_url: str = Field(default="https://api.github.com", pattern=r"^https?://")
    github_token: SecretStr | None = None
    github_hooks: tuple[str, ...] = ()
    reconcile_interval_seconds: float | None = Field(default=None, gt=0)
    session_discovery: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _windows_nest(self) -> Settings:
        if self.retention_raw_bodies_days > self.retention_records_days:
            raise ValueError(
                "LABLEDGER_RETENTION_RAW_BODIES_DAYS must not exceed "
                "LABLEDGER_RETENTION_RECORDS_DAYS: a raw body cannot outlive the record "
                "parsed from it"
            )
        if self.retention_audit_days < self.retention_records_days:
            raise ValueError(
                "LABLEDGER_RETENTION_AUDIT_DAYS must not be shorter than "
                "LABLEDGER_RETENTION_RECORDS_DAYS: the audit trail must outlive the records "
                "it explains"
            )
        return self

    @model_validator(mode="after")
    def _schedule_has_token(self) -> Settings:
        scheduled = self.reconcile_interval_seconds and (
            self.github_hooks or self.session_discovery
        )
        if scheduled and self.github_token is None:
            raise ValueError(
                "LABLEDGER_RECONCILE_INTERVAL_SECONDS needs LABLEDGER_GITHUB_TOKEN to reach "
                "GitHub's API; set the token or unset the interval"
            )
        return self

    @field_validator("subscribers", mode="before")
    @classmethod
    def _parse_subscribers(cls, value: object) -> object:
        return parse_subscribers(value) if isinstance(value, str) else value

    def token_scopes(self) -> list[tuple[str, str]]:
        """(scope, token) per LABLEDGER_API_TOKENS entry; a bare token has the admin scope."""
        found = []
        for entry in self.api_tokens:
            raw = entry.get_secret_value()
            scope, sep, token = raw.partition(":")
            found.append((scope, token) if sep and scope in SCOPES and token else ("admin", raw))
        return found

    def subscriber_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.subscribers)

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(t.strip() for t in value.split(",") if t.strip())
        return value

    @field_validator("github_hooks", "session_discovery", mode="before")
    @classmethod
    def _split_entries(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(e.strip() for e in value.split(",") if e.strip())
        return value

    @field_validator("github_hooks")
    @classmethod
    def _hooks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for hook in value:
            hook_base(hook)
        return value

    @field_validator("session_discovery")
    @classmethod
    def _discovery(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            if not DISCOVERY.match(entry):
                raise ValueError(f"{entry!r} is not ORG/GLOB=LAB_ID (e.g. cs101/lab1-*=lab1)")
        return value

    def require_github_api(self) -> str:
        """The token for GitHub's REST API; reconciling without one is a configuration error."""
        if self.github_token is None:
            raise ConfigError(
                f"{PREFIX}GITHUB_TOKEN is not set (a fine-grained token with webhooks read "
                "and write; see README, When labledger was down)"
            )
        return self.github_token.get_secret_value()

    @field_validator("github_webhook_secret", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @classmethod
    def from_env(cls, environ: Mapping[str, str], config_file: Path | None = None) -> Settings:
        """Environment variables win over the file; both use the LABLEDGER_* names."""
        values: dict[str, object] = {}
        path = config_file or (
            Path(environ[f"{PREFIX}CONFIG"]) if environ.get(f"{PREFIX}CONFIG") else None
        )
        if path is not None:
            values.update(_read_file(path))
        values.update(
            {
                k: v
                for k, v in environ.items()
                if k.startswith(PREFIX)
                and k != f"{PREFIX}CONFIG"
                and not k.startswith(RESERVED_PREFIXES)
            }
        )
        fields = {f"{PREFIX}{name.upper()}": name for name in cls.model_fields}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ConfigError(
                f"unknown setting(s): {', '.join(unknown)}; known: {', '.join(sorted(fields))}"
            )
        try:
            return cls.model_validate({fields[k]: v for k, v in values.items()})
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            if not first["loc"]:  # a rule across settings names them in its message
                raise ConfigError(str(first["msg"]).removeprefix("Value error, ")) from None
            name = f"{PREFIX}{str(first['loc'][0]).upper()}"
            raise ConfigError(f"{name}: {first['msg']}") from None

    def require_serving(self) -> None:
        """`serve` never runs without a webhook secret and API tokens: no silent fallbacks."""
        missing = []
        if self.github_webhook_secret is None:
            missing.append(
                f"{PREFIX}GITHUB_WEBHOOK_SECRET (the secret set on the GitHub webhook; "
                "without it every webhook would be unauthenticated)"
            )
        if not self.api_tokens:
            missing.append(
                f"{PREFIX}API_TOKENS (comma-separated bearer tokens for the /api/v1 routes)"
            )
        if missing:
            raise ConfigError("cannot serve; set " + " and ".join(missing))
        self.signer()

    def signer(self) -> SignerKey:
        """The checkpoint signing key; its absence is an error, never a silent unsigned log."""
        path = self.signing_key_file
        try:
            text = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise ConfigError(
                f"signing key {path} not found (LABLEDGER_SIGNING_KEY_FILE); "
                "create it with `labledger keys init`"
            ) from None
        try:
            return SignerKey.parse(text)
        except MalformedKey as exc:
            raise ConfigError(f"signing key {path} is not a labledger signing key: {exc}") from None

    def github_secret_bytes(self) -> bytes:
        if self.github_webhook_secret is None:
            raise ConfigError(f"{PREFIX}GITHUB_WEBHOOK_SECRET is not set")
        return self.github_webhook_secret.get_secret_value().encode("utf-8")


def _read_file(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return {str(k): v for k, v in data.items()}
