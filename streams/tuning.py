"""Client tuning that aiokafka exposes only as module constants.

``ConcurrentTransactions`` backoff (KAFKA-5477): right after a transaction
commits, the coordinator is still writing its markers, and the next
transaction's AddPartitionsToTxn is refused with CONCURRENT_TRANSACTIONS until
they are written (a few ms on a local broker). aiokafka then waits a fixed
20 ms (``BACKOFF_OVERRIDE``) before retrying, which alone was most of an
engine transaction's time on a local broker (``benchmarks/bench_txn.py``).
The session engine commits one transaction per partition batch back to back,
so it retries after 2 ms instead.
"""

from __future__ import annotations

import aiokafka.producer.sender as _sender
from aiokafka import AIOKafkaProducer
from aiokafka.errors import ProducerFenced

TXN_RETRY_BACKOFF_S = 0.002


def shorten_transaction_backoff(seconds: float = TXN_RETRY_BACKOFF_S) -> None:
    """Retry a refused AddPartitionsToTxn after ``seconds`` instead of 20 ms."""
    _sender.BACKOFF_OVERRIDE = seconds


def producer_fenced(producer: AIOKafkaProducer, error: BaseException) -> bool:
    """Whether ``error`` (from a transaction of ``producer``) means another producer with
    the same transactional id fenced this one.

    aiokafka surfaces a fencing as ``ProducerFenced`` only to whoever awaits the
    failing request; the next call on the producer fails with ``IllegalOperation``
    or a failed batch instead. The fencing itself ends the producer's sender task
    (aiokafka 0.14: ``_sender.sender_task``), so look there too.
    """
    if isinstance(error, ProducerFenced):
        return True
    sender = getattr(producer, "_sender", None)
    task = getattr(sender, "sender_task", None)
    if task is None or not task.done() or task.cancelled():
        return False
    return isinstance(task.exception(), ProducerFenced)
