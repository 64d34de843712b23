"""Settings, read once at the edge from a mapping (the environment) and an optional file."""

from __future__ import annotations

import base64
import binascii
import json
import re
import tomllib
from collections.abc import Mapping
from datetime import timedelta
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
from labledger.forges import gitea, gitlab
from labledger.forges.github_api import hook_base
from labledger.forges.github_app import AppKey
from labledger.forges.github_scope import ScopedSecret as GithubSecret
from labledger.forges.github_scope import parse_scoped_secrets
from labledger.forges.scoped import ScopedSecret
from labledger.safe_files import FileRefused, read_small
from labledger.tokens import SCOPES as SCOPES  # where the HTTP edge has always found them
from labledger.tokens import ApiToken, parse_api_tokens

PREFIX = "LABLEDGER_"
# Names the test and benchmark suites use for themselves; never settings of the service.
RESERVED_PREFIXES = (f"{PREFIX}TEST_", f"{PREFIX}BENCH_")
GITHUB_MAX_BODY_BYTES = 25 * 1024 * 1024  # GitHub does not deliver larger payloads.
DEFAULT_DATABASE_URL = "sqlite:///labledger.db"
MAX_RETENTION_DAYS = 100 * 366
DISCOVERY = re.compile(r"^[\w.-]+/[^=,]+=[^=,]+$")

# The Standard Webhooks specification's minimum secret length (before base64).
MIN_SUBSCRIBER_SECRET_BYTES = 24


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
            if raw == body or not (key := base64.b64decode(body, validate=True)):
                raise ValueError
        except (ValueError, binascii.Error):
            raise ValueError("a subscriber secret is whsec_ followed by base64") from None
        if len(key) < MIN_SUBSCRIBER_SECRET_BYTES:
            raise ValueError(
                f"a subscriber secret holds at least {MIN_SUBSCRIBER_SECRET_BYTES} bytes "
                "(Standard Webhooks); make one with `echo whsec_$(openssl rand -base64 32)`"
            )
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
    # Comma-separated `owner:ID=SECRET` / `installation:ID=SECRET` (forges/github_scope.py).
    github_webhook_secrets: SecretStr | None = None
    # A forge-signed pushed_at older than this at first receipt is kept but time_unconfirmed.
    clock_skew_seconds: int = Field(default=900, ge=0, le=7 * 24 * 3600)
    api_tokens: tuple[ApiToken, ...] = ()
    max_body_bytes: int = Field(default=GITHUB_MAX_BODY_BYTES, gt=0)
    body_timeout_seconds: float = Field(default=30.0, gt=0)
    # Limits that keep the server up under abuse (http/limits.py, cli/server_verbs.py).
    max_api_body_bytes: int = Field(default=1024 * 1024, gt=0)
    webhook_bytes_in_flight: int = Field(default=4 * GITHUB_MAX_BODY_BYTES, gt=0)
    api_concurrency: int = Field(default=12, ge=1, le=1000)
    webhook_concurrency: int = Field(default=16, ge=1, le=1000)
    feed_max_waiters: int = Field(default=100, ge=1, le=100_000)
    header_timeout_seconds: float = Field(default=10.0, gt=0)
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
    # The only proxy notifications go through: HTTP(S)_PROXY in the environment is ignored.
    dispatch_proxy: str | None = Field(default=None, pattern=r"^https?://")
    # Retention windows in days, counted from a session's close (RETENTION.md).
    retention_records_days: int = Field(default=5 * 365 + 1, ge=1, le=MAX_RETENTION_DAYS)
    retention_raw_bodies_days: int = Field(default=90, ge=1, le=MAX_RETENTION_DAYS)
    retention_audit_days: int = Field(default=7 * 365 + 2, ge=1, le=MAX_RETENTION_DAYS)
    # The connection `purge` and `erase` use: the schema owner on PostgreSQL, never the
    # server's SELECT/INSERT role. Defaults to LABLEDGER_DATABASE_URL.
    maintenance_database_url: str | None = None
    # Signs the web view's cookies and read-only student links; rotating it revokes both.
    ui_secret_key: SecretStr | None = None
    # GitLab and Gitea/Forgejo (docs/forges.md): comma-separated `[INSTANCE@][SCOPE=]SECRET`.
    gitlab_webhook_token: SecretStr | None = None
    gitlab_signing_token: SecretStr | None = None
    gitea_webhook_secret: SecretStr | None = None
    # Reconciliation with GitHub's REST API (README "When labledger was down").
    github_api_url: str = Field(default="https://api.github.com", pattern=r"^https?://")
    github_token: SecretStr | None = None
    # Or as a GitHub App (forges/github_app.py): its numeric id and its PEM private key.
    github_app_id: str | None = Field(default=None, pattern=r"^[0-9]{1,20}$")
    github_app_private_key_file: Path | None = None
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
    def _forge_secrets_parse(self) -> Settings:
        self.gitlab_credentials()
        self.gitea_secrets()
        return self

    def gitlab_credentials(self) -> gitlab.Credentials:
        return gitlab.Credentials.parse(
            _revealed(self.gitlab_webhook_token), _revealed(self.gitlab_signing_token)
        )

    def gitea_secrets(self) -> tuple[ScopedSecret, ...]:
        return gitea.parse_secrets(_revealed(self.gitea_webhook_secret))

    @model_validator(mode="after")
    def _one_webhook_fits_in_flight(self) -> Settings:
        if self.webhook_bytes_in_flight < self.max_body_bytes:
            raise ValueError(
                "LABLEDGER_WEBHOOK_BYTES_IN_FLIGHT must be at least LABLEDGER_MAX_BODY_BYTES: "
                "otherwise a webhook of the largest allowed size could never be received"
            )
        return self

    @model_validator(mode="after")
    def _schedule_has_token(self) -> Settings:
        scheduled = self.reconcile_interval_seconds and (
            self.github_hooks or self.session_discovery
        )
        if scheduled and self.github_token is None and self.github_app_id is None:
            raise ValueError(
                "LABLEDGER_RECONCILE_INTERVAL_SECONDS needs LABLEDGER_GITHUB_TOKEN (or the "
                "GitHub App settings) to reach GitHub's API; set one or unset the interval"
            )
        return self

    @field_validator("subscribers", mode="before")
    @classmethod
    def _parse_subscribers(cls, value: object) -> object:
        return parse_subscribers(value) if isinstance(value, str) else value

    def token_scopes(self) -> list[tuple[str, str]]:
        """(scope, token) per LABLEDGER_API_TOKENS entry (api_tokens has their names too)."""
        return [(t.scope, t.secret.get_secret_value()) for t in self.api_tokens]

    def subscriber_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.subscribers)

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        """`name:scope:token`, `scope:token` or a bare (admin) token, comma-separated."""
        if isinstance(value, str):
            value = tuple(t.strip() for t in value.split(",") if t.strip())
        if isinstance(value, list | tuple) and all(isinstance(t, str) for t in value):
            return parse_api_tokens(tuple(value))
        return value

    @field_validator("ui_secret_key")
    @classmethod
    def _long_ui_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("at least 32 characters (e.g. `openssl rand -hex 32`)")
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

    def require_github_api(self) -> str | AppKey:
        """A token, or the App's id and key, for GitHub's REST API; reconciling without
        either is a configuration error."""
        if self.github_app_id is not None and self.github_app_private_key_file is not None:
            path = self.github_app_private_key_file
            try:
                pem = read_small(path).decode("ascii")
            except (FileRefused, UnicodeDecodeError) as exc:
                raise ConfigError(
                    f"{PREFIX}GITHUB_APP_PRIVATE_KEY_FILE: cannot read {path} as a PEM key: {exc}"
                ) from None
            return AppKey(self.github_app_id, pem)
        if self.github_token is None:
            raise ConfigError(
                f"{PREFIX}GITHUB_TOKEN is not set (a fine-grained token with webhooks read "
                f"and write), nor {PREFIX}GITHUB_APP_ID with {PREFIX}GITHUB_APP_PRIVATE_KEY_FILE; "
                "see docs/completeness.md"
            )
        return self.github_token.get_secret_value()

    @model_validator(mode="after")
    def _one_github_identity(self) -> Settings:
        app = (self.github_app_id is not None, self.github_app_private_key_file is not None)
        if app[0] != app[1]:
            raise ValueError(
                "LABLEDGER_GITHUB_APP_ID and LABLEDGER_GITHUB_APP_PRIVATE_KEY_FILE go together: "
                "set both to act as a GitHub App, or neither"
            )
        if all(app) and self.github_token is not None:
            raise ValueError(
                "set LABLEDGER_GITHUB_TOKEN or the GitHub App settings, not both: labledger "
                "would not know which identity to act as"
            )
        return self

    @field_validator("github_webhook_secret", "github_webhook_secrets", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("github_webhook_secrets")
    @classmethod
    def _scoped_secrets_parse(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_scoped_secrets(value.get_secret_value())  # ValueError names the entry
        return value

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
            message = str(first["msg"]).removeprefix("Value error, ")
            if not first["loc"]:  # a rule across settings names them in its message
                raise ConfigError(message) from None
            raise ConfigError(f"{PREFIX}{str(first['loc'][0]).upper()}: {message}") from None

    def require_serving(self) -> None:
        """`serve` never runs without a webhook secret and API tokens: no silent fallbacks."""
        missing = []
        forge_secrets = (
            self.gitlab_webhook_token,
            self.gitlab_signing_token,
            self.gitea_webhook_secret,
        )
        if not self.github_secrets() and not any(forge_secrets):
            missing.append(
                f"{PREFIX}GITHUB_WEBHOOK_SECRET or {PREFIX}GITHUB_WEBHOOK_SECRETS (the secret "
                f"set on the GitHub webhook, or {PREFIX}GITLAB_WEBHOOK_TOKEN / "
                f"{PREFIX}GITEA_WEBHOOK_SECRET for those forges; "
                "without one every webhook would be unauthenticated)"
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

    @property
    def clock_skew(self) -> timedelta:
        return timedelta(seconds=self.clock_skew_seconds)

    def github_secrets(self) -> tuple[GithubSecret, ...]:
        """The scoped secrets, then the unscoped one: a delivery is checked against each."""
        scoped = self.github_webhook_secrets
        found = parse_scoped_secrets(scoped.get_secret_value()) if scoped is not None else ()
        if self.github_webhook_secret is not None:
            found += (GithubSecret(self.github_webhook_secret.get_secret_value().encode()),)
        return found

    def github_secret_bytes(self) -> bytes:
        if self.github_webhook_secret is None:
            raise ConfigError(f"{PREFIX}GITHUB_WEBHOOK_SECRET is not set")
        return self.github_webhook_secret.get_secret_value().encode("utf-8")


def _revealed(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()


def _read_file(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return {str(k): v for k, v in data.items()}
