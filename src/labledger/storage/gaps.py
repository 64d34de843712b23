"""Gaps in push chains, found by SQL from the ledger alone (contract invariant 11).

Per forge, repository and ref, every recorded push's `before` should be the `after` of some
recorded push. One whose `before` is nobody's `after` marks a gap: at least one push is
missing between them. Exceptions: a creation starts from zeros, and the earliest push of a
ref (by trusted time) starts its chain, since a repository made from a template begins at
a commit nobody pushed while labledger watched. Recording the missing push closes the gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, exists, func, or_, select
from sqlalchemy.sql import Select
from sqlalchemy.sql.selectable import NamedFromClause

from labledger.core.model import ZERO_SHA, branch_of
from labledger.storage.tables import deliveries, pushes

# Git's zero id in SHA-1 and in SHA-256 repositories.
ZERO_IDS = (ZERO_SHA, "0" * 64)


@dataclass(frozen=True, slots=True)
class ChainGap:
    """A recorded push whose `before` no recorded push of its ref ended at."""

    forge: str
    repository_id: int
    repository_full_name: str
    ref: str
    push_id: int
    delivery_id: str
    missing_after: str  # the head some missing push must have left the ref at
    after: str
    pushed_at: datetime | None
    received_at: datetime

    @property
    def branch(self) -> str | None:
        return branch_of(self.ref)


def gaps_query(forge: str | None = None, repository_id: int | None = None) -> Select[Any]:
    """The open gaps, oldest push first; optionally of one forge and repository."""
    p, d = pushes.alias("p"), deliveries.alias("d")
    linked, earlier, earlier_d = pushes.alias("linked"), pushes.alias("e"), deliveries.alias("ed")
    own_time = func.coalesce(p.c.pushed_at, d.c.received_at)
    earlier_time = func.coalesce(earlier.c.pushed_at, earlier_d.c.received_at)

    def same_ref(other: NamedFromClause) -> ColumnElement[bool]:
        o = other.c
        return and_(o.forge == p.c.forge, o.repository_id == p.c.repository_id, o.ref == p.c.ref)

    has_link = exists().where(same_ref(linked), linked.c.after_sha == p.c.before_sha)
    starts_later = exists(
        select(earlier.c.id)
        .join(earlier_d, earlier_d.c.id == earlier.c.delivery_pk)
        .where(
            same_ref(earlier),
            or_(
                earlier_time < own_time,
                and_(earlier_time == own_time, earlier.c.id < p.c.id),
            ),
        )
    )
    query = (
        select(
            p.c.forge, p.c.repository_id, p.c.repository_full_name, p.c.ref,
            p.c.id.label("push_id"), d.c.delivery_id, p.c.before_sha, p.c.after_sha,
            p.c.pushed_at, d.c.received_at,
        )
        .join(d, d.c.id == p.c.delivery_pk)
        .where(p.c.before_sha.not_in(ZERO_IDS), ~has_link, starts_later)
        .order_by(p.c.id)
    )  # fmt: skip
    if forge is not None:
        query = query.where(p.c.forge == forge)
    if repository_id is not None:
        query = query.where(p.c.repository_id == repository_id)
    return query


def read_gaps(
    conn: Connection, forge: str | None = None, repository_id: int | None = None
) -> list[ChainGap]:
    return [
        ChainGap(
            r.forge, r.repository_id, r.repository_full_name, r.ref, r.push_id, r.delivery_id,
            r.before_sha, r.after_sha, r.pushed_at, r.received_at,
        )
        for r in conn.execute(gaps_query(forge, repository_id))
    ]  # fmt: skip


def count_gaps(conn: Connection) -> int:
    counted: int = conn.execute(
        select(func.count()).select_from(gaps_query().order_by(None).subquery())
    ).scalar_one()
    return counted
