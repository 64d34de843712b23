"""What every `labledger` command shares: settings, the store, option types, output."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from pydantic import BaseModel
from sqlalchemy import Engine

from labledger.config import ConfigError, Settings
from labledger.core.note import SignerKey
from labledger.storage import migrate as migrations
from labledger.storage.engine import make_engine
from labledger.storage.merkle_log import SqlLog
from labledger.storage.sql_store import SqlStore

EXIT_LEDGER_ERROR = 1
EXIT_USAGE = 2
EXIT_TAMPERED = 3


class Context:
    """Settings and store, made on first use so `--help` needs no database."""

    def __init__(self, config_file: Path | None) -> None:
        self.config_file = config_file
        self._settings: Settings | None = None
        self._engine: Engine | None = None
        self._store: SqlStore | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.from_env(os.environ, self.config_file)
        return self._settings

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.settings.database_url)
        return self._engine

    @property
    def store(self) -> SqlStore:
        if self._store is None:
            engine = self.engine
            if not migrations.is_up_to_date(engine):
                raise ConfigError(
                    f"the database at {engine.url.render_as_string(hide_password=True)} is not "
                    "migrated to this version of labledger; run `labledger migrate` first"
                )
            self._store = SqlStore(engine, self.settings.subscriber_names())
        return self._store

    def signer(self) -> SignerKey:
        """The signing key, refused unless it was made for this ledger (one key, one ledger)."""
        key = self.settings.signer()
        self.check_origin(key.name)
        return key

    def check_origin(self, key_name: str) -> None:
        origin = migrations.ledger_origin(self.store.engine)
        if key_name != origin:
            raise ConfigError(
                f"the key {key_name!r} belongs to another ledger; this ledger's origin is "
                f"{origin!r}: point LABLEDGER_SIGNING_KEY_FILE at a new file and run "
                "`labledger keys init` to make this ledger's key"
            )

    @property
    def log(self) -> SqlLog:
        return SqlLog(self.store.engine)

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
