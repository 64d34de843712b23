"""What every `labledger` command shares: settings, the store, option types, output."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from labledger.cli.database import open_engine, require_ledger
from labledger.core.errors import ConfigError

if TYPE_CHECKING:
    from pydantic import BaseModel
    from sqlalchemy import Engine

    from labledger.compose import Ledger, SqlLog, SqlStore
    from labledger.config import Settings
    from labledger.core.note import SignerKey

M = TypeVar("M", bound="BaseModel")

EXIT_LEDGER_ERROR = 1
EXIT_USAGE = 2
EXIT_TAMPERED = 3


class Context:
    """Settings and store, made on first use so `--help` needs no database (and no import of
    the libraries that reach one)."""

    def __init__(self, config_file: Path | None) -> None:
        self.config_file = config_file
        self._settings: Settings | None = None
        self._engine: Engine | None = None
        self._ledger: Ledger | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from labledger.config import Settings

            self._settings = Settings.from_env(os.environ, self.config_file)
        return self._settings

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = open_engine(self.settings.database_url)
        return self._engine

    @property
    def ledger(self) -> Ledger:
        """The migrated ledger; reading commands never create a database file."""
        if self._ledger is None:
            from labledger.compose import Ledger

            require_ledger(self.settings.database_url)
            engine = self.engine
            ledger = Ledger.on(engine, self.settings)
            if not ledger.is_migrated():
                raise ConfigError(
                    f"the database at {engine.url.render_as_string(hide_password=True)} is not "
                    "migrated to this version of labledger; run `labledger migrate` first"
                )
            self._ledger = ledger
        return self._ledger

    @property
    def store(self) -> SqlStore:
        return self.ledger.store

    def signer(self) -> SignerKey:
        """The signing key, refused unless it was made for this ledger (one key, one ledger)."""
        key = self.settings.signer()
        self.check_origin(key.name)
        return key

    def check_origin(self, key_name: str) -> None:
        refusal = self.ledger.key_refusal(key_name)
        if refusal is not None:
            raise ConfigError(refusal)

    @property
    def log(self) -> SqlLog:
        return self.ledger.log

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


pass_context = click.make_pass_decorator(Context)


class AwareDateTime(click.ParamType[datetime]):
    name = "ISO-8601 time with offset"

    def convert(self, value: Any, param: Any, ctx: Any) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not an ISO-8601 time", param, ctx)
        if moment.tzinfo is None:
            self.fail(f"{value!r} needs a UTC offset, e.g. 2026-12-01T23:59:00+01:00", param, ctx)
        return moment


TIME = AwareDateTime()


class DecimalNumber(click.ParamType[Decimal]):
    name = "number"

    def convert(self, value: Any, param: Any, ctx: Any) -> Decimal:
        if isinstance(value, Decimal):
            return value
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            number = Decimal("NaN")
        if not number.is_finite():
            self.fail(f"{value!r} is not a number; give one like 7 or 7.5", param, ctx)
        return number


NUMBER = DecimalNumber()


class JsonObject(click.ParamType[dict[str, Any]]):
    name = "JSON object"

    def convert(self, value: Any, param: Any, ctx: Any) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            self.fail(f"{value!r} is not JSON ({exc}); give a JSON object like '{{\"k\": 1}}'")
        if not isinstance(parsed, dict):
            self.fail(f"{value!r} is not a JSON object; give one like '{{\"k\": 1}}'")
        return parsed


JSON_OBJECT = JsonObject()


def validated(model: type[M], data: dict[str, Any]) -> M:
    """The API's request model built from options; its first complaint names the option."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        option = "--" + str(first["loc"][0]).replace("_", "-") if first["loc"] else "input"
        raise click.BadParameter(first["msg"], param_hint=option) from None


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print the API's JSON instead of text."
)


def emit(model: BaseModel | Sequence[BaseModel], as_json: bool, text: Iterable[str]) -> None:
    if as_json:
        data = (
            [m.model_dump(mode="json") for m in model]
            if isinstance(model, Sequence)
            else model.model_dump(mode="json")
        )
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        for line in text:
            click.echo(line)
