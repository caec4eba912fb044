"""Per async function: an SQS queue and its dead-letter queue.

* FIFO (``.fifo``) when the function declares ``ordering``; content-based
  deduplication stays off because the enqueue side sets ``MessageDeduplicationId``
  (the idempotency key or the job id, see functions/queue_consumer/sqs_queue.py).
* ``maxReceiveCount`` = ``retry.max_attempts``: the consumer makes a message visible
  at once after its last failed attempt, and SQS moves it, body intact, on the next
  receive (DESIGN §7: a message is never lost).
* Visibility timeout = 6 x the consumer Lambda's timeout (AWS's rule for Lambda
  event sources), so a message is not redelivered while a batch is still running.
* SQS-managed encryption and TLS-only access (a queue policy denying plain HTTP).
* The DLQ keeps messages 14 days, the longest SQS allows, for `flux queue dlq replay`.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.plan import FunctionPlan

DLQ_RETENTION = Duration.days(14)
QUEUE_RETENTION = Duration.days(4)


@dataclass(frozen=True)
class FunctionQueue:
    queue: sqs.Queue
    dlq: sqs.Queue


class FunctionQueues(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, functions: tuple[FunctionPlan, ...],
                 removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, construct_id)
        self.by_function: dict[str, FunctionQueue] = {}
        for fn in functions:
            plan = fn.queue
            if plan is None:
                continue
            fifo = True if plan.fifo else None
            # FIFO high throughput: ordering is per group (group_by), so deduplicate and throttle per group too.
            per_group = {"deduplication_scope": sqs.DeduplicationScope.MESSAGE_GROUP,
                         "fifo_throughput_limit": sqs.FifoThroughputLimit.PER_MESSAGE_GROUP_ID} if plan.fifo else {}
            dlq = sqs.Queue(self, f"{fn.name}-dlq", fifo=fifo, retention_period=DLQ_RETENTION,
                            encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True,
                            removal_policy=removal_policy)
            queue = sqs.Queue(
                self, f"{fn.name}-queue", fifo=fifo, retention_period=QUEUE_RETENTION,
                visibility_timeout=Duration.seconds(plan.visibility_timeout_s),
                dead_letter_queue=sqs.DeadLetterQueue(queue=dlq, max_receive_count=plan.max_receive_count),
                **per_group, encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True,
                removal_policy=removal_policy)
            self.by_function[fn.name] = FunctionQueue(queue, dlq)
