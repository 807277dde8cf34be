"""The outbox relay, a process of its own: publishes committed job ids to Kafka, and sweeps.

``publisher`` moves outbox rows to Kafka and notices a broker that lost its data; ``sweeper``
republishes what Kafka may have lost, hands back jobs of vanished workers and purges results past
retention; ``app`` runs both in one loop behind the ops server. Every query lives in the job store
(``schema.store.outbox``, ``schema.store.sweeps``).
"""
