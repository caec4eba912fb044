"""The queue layer: async functions run from a durable queue with retries, backoff, a DLQ and ordering.

Two adapters sit behind one port (:class:`~functions.queue_consumer.ports.JobQueue`):
SQLite under ``.flux/queue.db`` for ``flux dev`` and SQS (+ a DynamoDB job store) in AWS.
The logic that runs one delivery (:mod:`runner`) is shared by the local dispatcher and
the SQS batch consumer, so both record the same attempt spans and make the same
retry / dead-letter decisions.
"""
