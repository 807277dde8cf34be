"""The job store: the one place that writes job, batch, outbox, event and delivery rows.

Every function takes an open ``Connection`` (the caller owns the transaction: one group commit,
one worker batch) and returns typed, frozen records. Transitions are guarded UPDATEs
(``WHERE status IN (...)``), so a redelivered message or a cancel racing a worker can never move
a job out of a final state. Async callers run them with ``AsyncConnection.run_sync``.

Modules, one concept each: ``records`` (the typed rows), ``jobs`` (insert, claim, finish, retry,
cancel, requeue), ``batches``, ``events`` (notification rows written with a transition),
``deliveries`` (the notifier's claims and attempts), ``outbox`` (what the relay publishes),
``sweeps`` (republishing, abandoned claims, retention).
"""
