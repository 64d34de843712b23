"""Signed push deliveries planned up front, sent by client threads, redelivered verbatim."""

from __future__ import annotations

import hashlib
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx2

from tests.support import TOKEN, body_of, commit, headers_for, push_payload

AUTH = {"Authorization": f"Bearer {TOKEN}"}
REQUEST_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class PlannedDelivery:
    """One push event as GitHub would send it; a redelivery repeats headers and body exactly."""

    delivery_id: str
    branch: str
    commit_shas: tuple[str, ...]
    body: bytes = field(repr=False)
    headers: dict[str, str] = field(repr=False, hash=False, compare=False)

    @property
    def body_sha256(self) -> bytes:
        return hashlib.sha256(self.body).digest()


@dataclass(frozen=True)
class Answer:
    """What one request got back; `status` is None when no answer came (refused, reset)."""

    delivery_id: str
    status: int | None
    body: dict[str, Any] | None
    retry_after: str | None
    error: str | None
    started: float
    finished: float

    @property
    def attempt_ids(self) -> tuple[int, ...] | None:
        return tuple(self.body["attempt_ids"]) if self.body and "attempt_ids" in self.body else None

    @property
    def push_id(self) -> int | None:
        return self.body.get("push_id") if self.body else None


def plan_deliveries(
    tag: str, count: int, rng: random.Random, pool: list[dict[str, Any]]
) -> list[PlannedDelivery]:
    """`count` distinct deliveries; some re-push commits from `pool` (which they extend)."""
    planned = []
    for i in range(count):
        fresh = [commit(f"{tag}-{i}-{j}") for j in range(rng.randint(1, 3))]
        reused = [rng.choice(pool)] if pool and rng.random() < 0.3 else []
        commits = fresh + reused
        pool.extend(fresh)
        branch = "main" if rng.random() < 0.5 else f"feature/{tag}-{i}"
        body = body_of(push_payload(commits, ref=f"refs/heads/{branch}"))
        delivery_id = f"{tag}-{i}"
        planned.append(
            PlannedDelivery(
                delivery_id,
                branch,
                tuple(c["id"] for c in commits),
                body,
                headers_for(body, delivery_id=delivery_id),
            )
        )
    return planned


def post(client: httpx2.Client, url: str, delivery: PlannedDelivery) -> Answer:
    """POST one delivery to /webhooks/github; transport failures become an answer too."""
    started = time.monotonic()
    try:
        response = client.post(
            f"{url}/webhooks/github", content=delivery.body, headers=delivery.headers
        )
    except httpx2.TransportError as exc:
        return Answer(delivery.delivery_id, None, None, None, repr(exc), started, time.monotonic())
    try:
        body = response.json()
    except ValueError:
        body = {"raw": response.text[:500]}
    return Answer(
        delivery.delivery_id,
        response.status_code,
        body,
        response.headers.get("retry-after"),
        None,
        started,
        time.monotonic(),
    )


def send_concurrently(
    url: str | Callable[[int], str],
    deliveries: Iterable[PlannedDelivery],
    threads: int,
    *,
    on_answer: Callable[[Answer], None] = lambda a: None,
    stop: threading.Event | None = None,
    pause_s: float = 0.0,
    give_up_on_no_answer: bool = True,
) -> list[Answer]:
    """Send every delivery once from `threads` clients; a client stops at its first unanswered
    request (the server is gone) when `give_up_on_no_answer`, or when `stop` is set."""
    todo: queue.SimpleQueue[PlannedDelivery] = queue.SimpleQueue()
    for d in deliveries:
        todo.put(d)
    answers: list[Answer] = []
    stop = stop or threading.Event()

    def client_loop(index: int) -> None:
        target = url(index) if callable(url) else url
        with httpx2.Client(timeout=REQUEST_TIMEOUT_S) as client:
            while not stop.is_set():
                try:
                    delivery = todo.get_nowait()
                except queue.Empty:
                    return
                answer = post(client, target, delivery)
                answers.append(answer)
                on_answer(answer)
                if answer.status is None and give_up_on_no_answer:
                    return
                time.sleep(pause_s)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for f in [pool.submit(client_loop, i) for i in range(threads)]:
            f.result()
    return answers


def redeliver(url: str, deliveries: list[PlannedDelivery], threads: int = 4) -> dict[str, Answer]:
    """Redeliver every delivery (same headers, same body); each must get an answer."""
    answers = send_concurrently(url, deliveries, threads, give_up_on_no_answer=False)
    by_id = {a.delivery_id: a for a in answers}
    unanswered = [a for a in answers if a.status is None]
    assert not unanswered, f"redeliveries without an answer: {unanswered[:3]}"
    assert len(by_id) == len(deliveries)
    return by_id


def create_session(url: str, **fields: Any) -> int:
    """Open a lab session through the API; returns its id."""
    values = {
        "lab_id": "lab-reliability",
        "subject_id": "student-r",
        "repository_id": 186853002,
        "repository_full_name": "octo/lab",
        "opens_at": "2025-01-01T00:00:00Z",
        "due_at": "2025-11-24T15:00:00Z",
        "branch_glob": "*",
        "allow_shared_repository": True,  # scenarios open several sessions on one repository
    }
    values.update(fields)
    response = httpx2.post(
        f"{url}/api/v1/sessions", json=values, headers=AUTH, timeout=REQUEST_TIMEOUT_S
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])
