"""The local queue's priority classes: claimed apart, and served by the dispatcher in the
proportions of the classes' shares (the dispatch rates of their Cloud Tasks queues), with
no class starved."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from functions.config import PriorityShares
from functions.jobs import utcnow
from functions.priority import Priority
from functions.queue.dispatcher import SlotShares
from functions.queue.local import LocalTaskQueue
from functions.queue.protocol import Task
from tests.queue.conftest import FAST
from tests.queue.harness import DispatcherThread, Receiver

StartDispatcher = Callable[..., DispatcherThread]
ALL = list(Priority)


def _one_at_a_time(shares: SlotShares, slots: int, due: list[Priority]) -> list[Priority]:
    """Which class each of `slots` slots, freed one by one, went to."""
    taken: list[Priority] = []
    for _ in range(slots):
        ((chosen, _),) = shares.split(1, due).items()
        shares.charge(chosen, 1)
        taken.append(chosen)
    return taken


def test_busy_classes_share_the_slots_in_proportion_and_low_is_never_starved() -> None:
    """With every class backlogged, 1,100 slots go 500 : 500 : 100, and low gets one in
    every 11 all along, not only at the end."""
    taken = _one_at_a_time(SlotShares(PriorityShares()), 1_100, ALL)

    assert Counter(taken) == {Priority.HIGH: 500, Priority.NORMAL: 500, Priority.LOW: 100}
    for start in range(0, 1_100, 11):
        assert Priority.LOW in taken[start : start + 11]


def test_a_split_of_many_slots_follows_the_same_proportions() -> None:
    """A dispatcher with 11 free slots splits them 5 : 5 : 1 between busy classes, and one
    class alone takes all of them."""
    shares = SlotShares(PriorityShares())

    split = shares.split(11, ALL)

    assert split == {Priority.HIGH: 5, Priority.NORMAL: 5, Priority.LOW: 1}
    assert shares.split(12, [Priority.LOW]) == {Priority.LOW: 12}


def test_a_class_that_had_nothing_due_earns_no_credit_meanwhile() -> None:
    """After low ran alone for 1,000 slots, a high job that arrives takes 5 slots in 6, as
    always: not every slot until it has caught up with low's 1,000."""
    shares = SlotShares(PriorityShares())
    _one_at_a_time(shares, 1_000, [Priority.LOW])

    taken = _one_at_a_time(shares, 60, [Priority.HIGH, Priority.LOW])

    assert Counter(taken) == {Priority.HIGH: 50, Priority.LOW: 10}


def test_claim_takes_one_class_oldest_first(tasks: LocalTaskQueue) -> None:
    """`claim(priority=...)` takes only that class's due tasks, earliest due first; the
    queue says when each class's earliest task is due."""
    now = utcnow()
    tasks.enqueue(
        [
            Task(f"{level}-{n}", "http://127.0.0.1:9/", b"", priority=level)
            for level in Priority
            for n in range(3)
        ],
        now=now,
    )

    high = tasks.claim(10, priority=Priority.HIGH, now=now + timedelta(seconds=1))

    assert [t.name for t in high] == ["high-0", "high-1", "high-2"]
    assert {t.priority for t in high} == {Priority.HIGH}
    assert set(tasks.due_by_priority()) == {Priority.NORMAL, Priority.LOW}


def test_the_dispatcher_runs_a_late_high_job_ahead_of_an_earlier_low_backlog(
    tasks: LocalTaskQueue, receiver: Receiver, start_dispatcher: StartDispatcher
) -> None:
    """20 low tasks, then 6 high ones due later, on one slot: the 6 high ones are among
    the first 8 delivered, a low one is delivered between them, and all 26 arrive, each
    named by its class's queue."""
    now = utcnow()
    low = [Task(f"low-{n:02d}", receiver.url, b"", priority=Priority.LOW) for n in range(20)]
    high = [Task(f"high-{n}", receiver.url, b"", priority=Priority.HIGH) for n in range(6)]
    tasks.enqueue(low, now=now - timedelta(seconds=2))
    tasks.enqueue(high, now=now - timedelta(seconds=1))

    start_dispatcher(max_concurrent=1)
    delivered = receiver.wait_for(26)

    first = [r.task for r in delivered[:8]]
    assert {t.name for t in high} <= set(first)
    assert any(name.startswith("low-") for name in first)
    queues = {r.task.split("-")[0]: r.headers["x-cloudtasks-queuename"] for r in delivered}
    assert queues == {"high": FAST.high_queue_name, "low": FAST.low_queue_name}


def test_a_queue_file_from_before_priorities_keeps_its_tasks_as_normal(db: Path) -> None:
    """A queue table without the priority column gains it on open; its tasks are normal
    and still claimed."""
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TABLE queue_tasks (name TEXT PRIMARY KEY, url TEXT NOT NULL, body BLOB NOT"
            " NULL, headers TEXT NOT NULL, state TEXT NOT NULL, schedule_time INTEGER NOT NULL,"
            " attempts INTEGER NOT NULL DEFAULT 0, responses INTEGER NOT NULL DEFAULT 0,"
            " created_at INTEGER NOT NULL, claimed_at INTEGER, finished_at INTEGER,"
            " last_status INTEGER, last_error TEXT)"
        )
        conn.execute(
            "INSERT INTO queue_tasks (name, url, body, headers, state, schedule_time,"
            " created_at) VALUES ('old', 'http://127.0.0.1:9/', x'', '{}', 'queued', 0, 0)"
        )
    queue = LocalTaskQueue(db, FAST)
    try:
        (claimed,) = queue.claim(5, priority=Priority.NORMAL)
        assert claimed.name == "old" and claimed.priority is Priority.NORMAL
    finally:
        queue.close()
