"""The Kafka side of a worker: pull job ids in batches with a consumer group, commit after storing.

Offsets are committed only after the batch's results are committed to the database, so a worker
killed mid-batch loses nothing: its partitions move to another member, which receives the same ids
again and finds the jobs still open (or already finished, and skips them).

A consumer can also stall without any error, and the broker says nothing about it (all seen with
plain kafka-python on the embedded broker): after the broker came back empty it fetches at a
position past the end of the new log; after a member was killed -9 the group never hands that
member's partitions to anyone; when two members rejoin at once the group may hang in its rebalance
until the rebalance timeout. So each lane checks for itself, and the database, where every job
lives, settles what Kafka cannot:

- a position past the highwater mark is moved back to the committed offset or the beginning;
- a lane that has read everything it holds while the database shows jobs Kafka handed out long
  ago that it never received (the same jobs on two checks) rejoins the group; if they still do not
  come, it reads its partitions again from the beginning and runs those jobs straight from the
  database. Ids delivered twice are harmless (claims skip final jobs), so this errs on the eager
  side.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)
from sqlalchemy import Engine

from common.metrics import CONSUMER_LAG, CONSUMER_RECOVERIES
from schema.dbwatch import Signature, SqliteWatch
from schema.models import utcnow
from schema.settings import Settings
from schema.store import queue
from schema.store.queue import LaneQueue
from workers.errors import WorkerError
from workers.execution import BatchOutcome, JobExecutor

log = logging.getLogger(__name__)

# A batch of long documents can take minutes; the group must not evict its member meanwhile.
_MAX_POLL_INTERVAL_MS = 30 * 60 * 1000
# How long the interactive lane is polled between bulk batches once it holds its partitions.
_INTERACTIVE_GLANCE_MS = 20
# Both lanes empty this long and the loop slows to an idle pace: the interactive glance, a look at
# what the bulk lane's last fetch brought, then a plain wait. In kafka-python a poll waiting on an
# in-flight fetch costs several times the CPU of a sleep, so the wait replaces the 400 ms bulk poll.
_IDLE_AFTER_S = 2.0
# The glance plus this wait is a shorter round than the busy loop's 20 + 400 ms, so the first
# interactive job after an idle spell is not picked up later than before.
_IDLE_PAUSE_S = 0.35
# Idle, the glance covers one fetch of the broker's 5 ms wait rather than three or four: those
# fetches are most of what an idle worker spends.
_IDLE_GLANCE_MS = 10
# Where the database is a SQLite file (the embedded stack), an idle loop waits this long for a
# commit instead of the pause above: every job reaches Kafka through commits (the submit, then the
# relay's publication), so a quiet file means nothing new, and a commit wakes the loop at once.
_WATCHED_IDLE_PAUSE_S = 5.0
# How often a lane may ask the database whether work is waiting for it.
_STALL_CHECK_EVERY_S = 5.0
# A suspicion is confirmed only after this many polls of the lane, so that the fetch it rests on
# was sent after the first check (a lane polled once around a long batch reads an old response).
_POLLS_TO_CONFIRM = 3
# Before a rejoin each lane waits a random share of stall_after_s on top, so that workers which saw
# the same stall do not rejoin together: on the embedded broker two members leaving and joining at
# once can hang the group's rebalance, and one rejoin usually heals the group for all.
_JITTER_SHARE = 0.5
# Rejoins that did not help double the pause before the next one, up to this many times, so a lane
# that a rejoin cannot heal does not force a rebalance of the group every few seconds.
_MAX_BACKOFF_DOUBLINGS = 4
# Offset and group requests of a recovery; the run loop reconnects if the broker does not answer.
_RECOVERY_TIMEOUT_MS = 10_000
# While another worker is alive and running jobs of the lane, a waiting job may be in its backlog,
# and a rejoin would hold the whole group until that worker's batch ends: past this many
# stall_after_s the lane heals anyway.
_BUSY_PATIENCE = 10
# Ids this lane received, remembered so that the jobs of the batch in hand never look missed.
_REMEMBERED_IDS = 10_000
# kafka-python 3.0 re-awaits a group join that is still in flight at the next poll, but throws away
# one that completed between two polls and sends a new JoinGroup. Brokers hold JoinGroup for
# seconds (tansu about 5 s; Kafka its initial rebalance delay), so a lane polled for less than that
# per call (the idle bulk glance, the interactive lane's 20 ms) may never finish joining: an idle
# worker kept rejoining its bulk group every 5 s. A join in flight is therefore waited for, one
# lane at a time, before any lane is polled again; up to this long, so that a rebalance held up
# by a member busy with a long batch does not stop the other lane for minutes.
_JOIN_WAIT_S = 10.0


def _join_in_flight(consumer: KafkaConsumer) -> bool:
    # kafka-python has no public view of its group state; another version without these
    # attributes is taken as never joining, which only loses the wait below.
    task = getattr(getattr(consumer, "_coordinator", None), "_join_task", None)
    return task is not None and not bool(getattr(task, "is_done", True))


def finish_join(consumer: KafkaConsumer, timeout_s: float) -> None:
    """Wait up to ``timeout_s`` for a group join in flight, if there is one."""
    if _join_in_flight(consumer):
        consumer._coordinator.ensure_active_group(timeout_ms=int(timeout_s * 1000))


def in_group(consumer: KafkaConsumer) -> bool:
    """Joined and synced, with or without partitions (a group may have more members than a topic
    has partitions, and such a member is settled too)."""
    need_rejoin = getattr(getattr(consumer, "_coordinator", None), "need_rejoin", None)
    if need_rejoin is None:
        return bool(consumer.assignment())
    return not need_rejoin() and not _join_in_flight(consumer)


class BatchFailedError(WorkerError):
    """The executor raised on a batch; its ids come again once the lane has been rewound."""

    code = "batch_failed"
    retryable = True


LaneProbe = Callable[[str], LaneQueue]
"""What the database says about a lane: the jobs that have waited longest for a consumer, and
whether a worker is busy on it."""


def store_probe(engine: Engine, *, heartbeat_s: float) -> LaneProbe:
    """A probe over the job store. A running job is alive while its worker's heartbeat (every
    ``heartbeat_s``) keeps touching it; two missed beats and it counts as abandoned."""
    alive_within = timedelta(seconds=2 * heartbeat_s + 5)

    def probe(lane: str) -> LaneQueue:
        now = utcnow()
        with engine.connect() as conn:
            return queue.lane_queue(conn, lane, now=now, alive_since=now - alive_within)

    return probe


@dataclass
class _Lane:
    """One lane's consumer and what the stall checks remember about it."""

    name: str
    topic: str
    group_id: str
    fetch_max_wait_ms: int
    consumer: KafkaConsumer
    received: dict[str, None] = field(default_factory=dict)
    # Polled in this round of the loop; a lane skipped while the other had records was not asked.
    polled: bool = False
    # Its position has reached the highwater mark of every partition it holds.
    caught_up: bool = False
    checked_at: float = float("-inf")
    # Jobs a check found missed, when, polls of the lane since, and when to act if they stay missed.
    suspects: frozenset[str] = frozenset()
    suspected_at: float = float("-inf")
    polls_since_suspected: int = 0
    act_after_s: float = 0.0
    rejoined_at: float = float("-inf")
    # Rejoins in a row that did not bring the missed jobs, and whether the lane has read its
    # partitions again since the last one.
    rejoins: int = 0
    reread: bool = False

    def remember(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            self.received.pop(job_id, None)
            self.received[job_id] = None
        while len(self.received) > _REMEMBERED_IDS:
            del self.received[next(iter(self.received))]

    def clear_suspicion(self) -> None:
        self.suspects = frozenset()
        self.suspected_at = float("-inf")


class BatchConsumer:
    """Two consumers, one per lane, so interactive jobs never queue behind a bulk upload.

    The interactive topic is polled first, briefly; the bulk topic only when it had nothing. Each
    lane has its own consumer group (``<group>`` and ``<group>.bulk``) so each keeps its own
    offsets. Pausing bulk partitions inside one consumer was tried first: kafka-python stopped
    fetching them for good after a resume, stalling uploads.

    ``probe`` (see :func:`store_probe`) lets a lane ask the database whether work is waiting that it
    never received; without one only positions past the end of a log are healed. ``clock``
    (monotonic seconds) and ``jitter`` (a fraction in [0, 1)) are injected so that tests step past
    the check intervals instead of waiting for them.
    """

    def __init__(
        self,
        settings: Settings,
        executor: JobExecutor,
        *,
        on_outcome: Callable[[BatchOutcome], None] | None = None,
        interactive_glance_ms: int = _INTERACTIVE_GLANCE_MS,
        probe: LaneProbe | None = None,
        watch: SqliteWatch | None = None,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.executor = executor
        self.on_outcome = on_outcome
        # Tests raise it: whether records already waiting arrive within 20 ms depends on how
        # busy the host is, and the lane priority they check must not hinge on that.
        self.interactive_glance_ms = interactive_glance_ms
        self.probe = probe
        self.watch = watch
        self.clock = clock
        self.jitter = jitter
        self._lanes: dict[str, _Lane] = {}
        self._idle_since: float | None = None
        self.batches = 0

    def _make_consumer(self, topic: str, group_id: str, *, fetch_max_wait_ms: int) -> KafkaConsumer:
        kafka = self.settings.kafka
        consumer = KafkaConsumer(
            bootstrap_servers=kafka.bootstrap_servers,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=kafka.session_timeout_ms,
            heartbeat_interval_ms=kafka.heartbeat_interval_ms,
            request_timeout_ms=max(kafka.request_timeout_ms, kafka.session_timeout_ms + 5_000),
            max_poll_records=self.settings.worker.max_batch,
            max_poll_interval_ms=_MAX_POLL_INTERVAL_MS,
            # Topics re-created after a broker lost its data must be noticed quickly.
            metadata_max_age_ms=5_000,
            fetch_max_wait_ms=fetch_max_wait_ms,
        )
        consumer.subscribe([topic])
        return consumer

    def _make_lane(self, name: str, topic: str, group_id: str, *, fetch_max_wait_ms: int) -> _Lane:
        consumer = self._make_consumer(topic, group_id, fetch_max_wait_ms=fetch_max_wait_ms)
        return _Lane(name, topic, group_id, fetch_max_wait_ms, consumer)

    def _connect(self) -> dict[str, _Lane]:
        if not self._lanes:
            kafka = self.settings.kafka
            self._lanes = {
                # The interactive lane is polled for a few milliseconds between bulk batches; a
                # broker holding its fetch for the default 500 ms would make it miss new jobs.
                "interactive": self._make_lane(
                    "interactive", kafka.topic, kafka.consumer_group, fetch_max_wait_ms=5
                ),
                "bulk": self._make_lane(
                    "bulk", kafka.bulk_topic, f"{kafka.consumer_group}.bulk", fetch_max_wait_ms=500
                ),
            }
        return self._lanes

    @property
    def connected(self) -> bool:
        return bool(self._lanes)

    def lane_consumer(self, lane: str) -> KafkaConsumer:
        """The Kafka consumer currently serving ``lane`` ("interactive" or "bulk")."""
        return self._connect()[lane].consumer

    def close(self) -> None:
        for lane in self._lanes.values():
            _close_quietly(lane.consumer)
        self._lanes = {}

    def _poll_batch(self, consumer: KafkaConsumer, first_wait_ms: int) -> list[Any]:
        """Up to ``max_batch`` records, waiting at most ``max_wait_ms`` once the first arrived."""
        worker = self.settings.worker
        first = consumer.poll(timeout_ms=first_wait_ms, max_records=worker.max_batch)
        records = [record for batch in first.values() for record in batch]
        if not records:
            return records
        deadline = time.monotonic() + worker.max_wait_ms / 1000
        while len(records) < worker.max_batch:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                break
            more = consumer.poll(timeout_ms=remaining_ms, max_records=worker.max_batch - len(records))
            records.extend(record for batch in more.values() for record in batch)
        return records

    def _finish_joins(self) -> None:
        """Let every group join in flight complete before a poll could start another one."""
        for lane in self._lanes.values():
            finish_join(lane.consumer, _JOIN_WAIT_S)

    def _poll_lane(self, lane: _Lane, first_wait_ms: int) -> list[str]:
        self._finish_joins()
        records = self._poll_batch(lane.consumer, first_wait_ms)
        job_ids = [record.value.decode() for record in records if record.value]
        lane.remember(job_ids)
        lane.polled = True
        lane.polls_since_suspected += 1
        return job_ids

    @property
    def idle(self) -> bool:
        """Both lanes have come back empty for a while: the loop runs at its idle pace."""
        return self._idle_since is not None and self.clock() - self._idle_since >= _IDLE_AFTER_S

    def run_once(self) -> BatchOutcome | None:
        lanes = self._connect()
        idle = self.idle
        for each in lanes.values():
            each.polled = False
        lane = lanes["interactive"]
        # Until the interactive consumer holds its partitions, give its poll time to finish
        # joining the group; afterwards a glance between bulk batches is enough.
        if not in_group(lane.consumer):
            first_wait_ms = 1_000
        elif idle:
            first_wait_ms = min(self.interactive_glance_ms, _IDLE_GLANCE_MS)
        else:
            first_wait_ms = self.interactive_glance_ms
        job_ids = self._poll_lane(lane, first_wait_ms)
        if not job_ids:
            lane = lanes["bulk"]
            # An idle bulk poll takes what its last fetch brought and sends the next one; the
            # broker holds that fetch while the loop waits in run().
            joined = in_group(lane.consumer)
            job_ids = self._poll_lane(lane, 0 if idle and joined else 400)
        if not job_ids:
            if self._idle_since is None:
                self._idle_since = self.clock()
            self._check_lanes()
            return None
        self._idle_since = None
        try:
            outcome = self.executor.run(job_ids)
        except Exception as exc:
            # Nothing was committed for these ids: the lane goes back to its committed offsets and
            # gets them again. The consumers stay in the group, since every worker failing at once
            # (a database outage) and rejoining together is what hangs the embedded broker's group.
            self._rewind(lane)
            raise BatchFailedError(str(exc)) from exc
        self._commit(lane)
        self.batches += 1
        # After the commit: a check may replace the consumer that fetched this batch.
        self._check_lanes()
        if self.on_outcome is not None:
            self.on_outcome(outcome)
        return outcome

    def run(self, stop: threading.Event) -> None:
        backoff = 0.5
        while not stop.is_set():
            seen = self.watch.signature() if self.watch is not None else None
            try:
                outcome = self.run_once()
                backoff = 0.5
                if outcome is None and self.idle:
                    self._idle_wait(stop, seen)
            except BatchFailedError as exc:
                log.warning("consumer: batch failed: %s; retrying in %.1fs", exc, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
            except Exception as exc:
                log.warning("consumer: %s; retrying in %.1fs", exc, backoff, exc_info=log.isEnabledFor(10))
                self.close()
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
        self.close()

    def _idle_wait(self, stop: threading.Event, seen: Signature | None) -> None:
        # Only once both lanes hold their partitions: joining the group (and learning of a topic
        # the relay's first publication created) takes several polls, which a long wait would
        # space out by seconds each, leaving the first jobs unread for a minute.
        settled = bool(self._lanes) and all(in_group(lane.consumer) for lane in self._lanes.values())
        if self.watch is None or seen is None or not settled:
            stop.wait(_IDLE_PAUSE_S)
        elif self.watch.wait(seen, stop, _WATCHED_IDLE_PAUSE_S):
            # Something was committed, perhaps a job on its way through the relay: poll at the
            # busy pace until the loop has been empty for a while again.
            self._idle_since = None

    @staticmethod
    def _rewind(lane: _Lane) -> None:
        consumer = lane.consumer
        for tp in consumer.assignment():
            committed = consumer.committed(tp, timeout_ms=_RECOVERY_TIMEOUT_MS)
            if committed is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)

    @staticmethod
    def _commit(lane: _Lane) -> None:
        try:
            lane.consumer.commit()
        except (
            CommitFailedError,
            RebalanceInProgressError,
            IllegalGenerationError,
            UnknownMemberIdError,
        ) as exc:
            # The results are stored; the group moved on meanwhile (a member joined or left, the
            # broker restarted). Whoever holds the partitions next gets these ids again and skips
            # them, and this consumer's next commit covers them if it keeps its partitions. Tearing
            # both lanes down for it would only force one more rebalance.
            log.info("%s lane: offsets not committed, the group is rebalancing: %s", lane.name, exc)

    # -- stall detection ---------------------------------------------------------------------

    def _check_lanes(self) -> None:
        for lane in list(self._lanes.values()):
            self._check_lane(lane)

    def _check_lane(self, lane: _Lane) -> None:
        past_end = self._inspect_positions(lane)
        if past_end:
            self._seek_back(lane, past_end)
        elif not lane.polled:
            # Skipped while the other lane had work: its jobs wait by design, not by a stall.
            lane.clear_suspicion()
        else:
            self._check_stalled(lane)

    @staticmethod
    def _inspect_positions(lane: _Lane) -> dict[TopicPartition, int]:
        """Record each partition's lag and whether the lane has caught up; return the partitions
        positioned past the highwater mark of their last fetch, with that mark.

        A position is never past the highwater mark of a log that kept its records; a broker that
        came back empty answers fetches from there with nothing rather than an error.
        """
        consumer = lane.consumer
        past_end: dict[TopicPartition, int] = {}
        caught_up = True
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            position = consumer.position(tp) if highwater is not None else None
            if highwater is None or position is None:
                caught_up = False
                continue
            CONSUMER_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(max(0, highwater - position))
            if position > highwater:
                past_end[tp] = highwater
            caught_up = caught_up and position >= highwater
        lane.caught_up = caught_up
        return past_end

    def _seek_back(self, lane: _Lane, past_end: dict[TopicPartition, int]) -> None:
        """Move positions past the end of the log back to the committed offset, or to the beginning
        when that is past the end too (a broker that lost its data lost the commits as well)."""
        consumer = lane.consumer
        # The end is the larger of the fetch's highwater mark and ListOffsets: the embedded broker
        # answers ListOffsets with the start of its last record batch, short of the real end.
        listed = consumer.end_offsets(list(past_end), timeout_ms=_RECOVERY_TIMEOUT_MS)
        for tp, highwater in past_end.items():
            end = max(highwater, listed.get(tp) or 0)
            position = consumer.position(tp)
            if position is None or position <= end:
                continue
            committed = consumer.committed(tp, timeout_ms=_RECOVERY_TIMEOUT_MS)
            if committed is not None and committed <= end:
                consumer.seek(tp, committed)
                target = f"the committed offset {committed}"
            else:
                consumer.seek_to_beginning(tp)
                target = "the beginning"
            log.warning(
                "%s lane: position %d on %s[%d] is past the end of the log (%d), the broker lost its "
                "data; reading again from %s",
                lane.name,
                position,
                tp.topic,
                tp.partition,
                end,
                target,
            )
            CONSUMER_RECOVERIES.labels(lane=lane.name, reason="past_log_end").inc()

    def _check_stalled(self, lane: _Lane) -> None:
        """Heal a lane that has read everything it holds while jobs it never received keep waiting:
        they sit on partitions no live member reads, or Kafka lost them."""
        if self.probe is None or not lane.caught_up:
            # Behind on its own partitions, the lane's backlog explains any wait.
            return
        now = self.clock()
        if now - lane.checked_at < _STALL_CHECK_EVERY_S:
            return
        lane.checked_at = now
        try:
            waiting = self.probe(lane.name)
        except Exception as exc:
            # The database being away is the executor's to report; it says nothing about the lane.
            log.warning("%s lane: could not read the queue for the stall check: %s", lane.name, exc)
            return
        stall_after_s = self.settings.worker.stall_after_s
        patience_s = stall_after_s * (_BUSY_PATIENCE if waiting.busy else 1)
        moment = utcnow()
        missed = {
            job.id: (moment - job.since).total_seconds()
            for job in waiting.waiting
            if job.id not in lane.received and (moment - job.since).total_seconds() >= patience_s
        }
        confirmed = [job_id for job_id in missed if job_id in lane.suspects]
        if not missed:
            lane.clear_suspicion()
            lane.rejoins = 0
        elif not confirmed:
            # A job published a moment ago may not be fetched yet; one still missing on a later
            # check, with fetches sent in between and the lane still caught up, was truly missed.
            self._suspect(lane, missed, now)
        elif lane.polls_since_suspected >= _POLLS_TO_CONFIRM and now - lane.suspected_at >= lane.act_after_s:
            self._recover(lane, missed)

    def _rejoins_next(self, lane: _Lane, now: float) -> bool:
        """Whether the lane's next recovery is a rejoin (else: read again and run from the database).

        First a rejoin; then, as long as jobs stay missed, runs from the database, with another
        rejoin only after a pause that doubles with each rejoin that did not help.
        """
        pause_s = self.settings.worker.stall_after_s * 2 ** min(lane.rejoins, _MAX_BACKOFF_DOUBLINGS)
        return lane.rejoins == 0 or (lane.reread and now - lane.rejoined_at >= pause_s)

    def _suspect(self, lane: _Lane, missed: Iterable[str], now: float) -> None:
        lane.suspects = frozenset(missed)
        lane.suspected_at = now
        lane.polls_since_suspected = 0
        lane.act_after_s = _STALL_CHECK_EVERY_S
        if self._rejoins_next(lane, now):
            lane.act_after_s += self.jitter() * _JITTER_SHARE * self.settings.worker.stall_after_s

    def _recover(self, lane: _Lane, missed: dict[str, float]) -> None:
        """Act on ``missed`` (job id -> seconds waited): two checks in a row found some of them."""
        why = (
            f"{len(missed)} job(s) handed to Kafka up to {max(missed.values()):.0f}s ago never reached "
            "this caught-up lane"
        )
        now = self.clock()
        rejoin = self._rejoins_next(lane, now)
        lane.clear_suspicion()
        if rejoin:
            log.warning("%s lane: %s; rejoining the group (rejoin %d)", lane.name, why, lane.rejoins + 1)
            _close_quietly(lane.consumer)
            fresh = self._make_lane(
                lane.name, lane.topic, lane.group_id, fetch_max_wait_ms=lane.fetch_max_wait_ms
            )
            fresh.received = lane.received
            fresh.rejoins = lane.rejoins + 1
            fresh.rejoined_at = now
            # Still suspected: if the rejoin does not bring them, they run from the database at the
            # first check that finds the rejoined lane caught up without them.
            self._suspect(fresh, missed, now)
            self._lanes[lane.name] = fresh
            CONSUMER_RECOVERIES.labels(lane=lane.name, reason="stalled").inc()
            return
        # The rejoin put every position back at its committed offset: ids Kafka still has can only
        # hide before it (a log refilled past the old position), so the lane reads its partitions
        # again, once per rejoin. Ids Kafka lost, or holds on partitions the group gives no one,
        # only the database still has: those jobs run from there, and the claim skips any that
        # finished meanwhile.
        partitions = sorted(lane.consumer.assignment()) if not lane.reread else []
        log.warning(
            "%s lane: %s, also after rejoining; running them from the database%s",
            lane.name,
            why,
            f" and reading its {len(partitions)} partitions again from the beginning" if partitions else "",
        )
        if partitions:
            lane.consumer.seek_to_beginning(*partitions)
        lane.reread = True
        CONSUMER_RECOVERIES.labels(lane=lane.name, reason="stalled_after_rejoin").inc()
        # Oldest first; any the next check still finds missing go in the next run.
        oldest = sorted(missed, key=missed.__getitem__, reverse=True)
        outcome = self.executor.run(oldest[: self.settings.worker.max_batch])
        self.batches += 1
        if self.on_outcome is not None:
            self.on_outcome(outcome)


def _close_quietly(consumer: KafkaConsumer) -> None:
    try:
        consumer.close(autocommit=False)
    except Exception as exc:
        log.debug("closing a consumer: %s", exc)
