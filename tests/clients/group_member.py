"""One member of a consumer group, run as its own process by test_group_clients.py.

Usage: group_member.py CLIENT BOOTSTRAP TOPIC GROUP, CLIENT one of confluent-kafka,
confluent-kafka-consumer (group.protocol=consumer, KIP-848), kafka-python, aiokafka. It subscribes to TOPIC in GROUP, commits after every record (or
batch) it consumed, and prints one JSON object a line on stdout:
  {"event": "assigned", "partitions": [...]}   after each rebalance (the whole assignment)
  {"event": "record", "partition": P, "offset": O, "value": "..."}
SIGTERM closes the consumer cleanly (it leaves the group) and exits 0."""

import asyncio
import json
import signal
import sys

SESSION_TIMEOUT_MS = 6000
HEARTBEAT_INTERVAL_MS = 500

stopping = False


def on_sigterm(*_):
    global stopping
    stopping = True


def emit(**obj):
    print(json.dumps(obj), flush=True)


def consume_and_commit(c):
    """confluent-kafka's loop: each record reported, then committed synchronously."""
    while not stopping:
        msg = c.poll(0.2)
        if msg is None:
            continue
        if msg.error():
            emit(event="error", error=str(msg.error()))
            continue
        emit(event="record", partition=msg.partition(), offset=msg.offset(), value=msg.value().decode())
        c.commit(message=msg, asynchronous=False)
    c.close()


def run_confluent(addr, topic, group):
    from confluent_kafka import Consumer

    c = Consumer(
        {
            "bootstrap.servers": addr,
            "group.id": group,
            "client.id": "ck-member",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": SESSION_TIMEOUT_MS,
            "heartbeat.interval.ms": HEARTBEAT_INTERVAL_MS,
        }
    )
    c.subscribe([topic], on_assign=lambda _c, parts: emit(event="assigned", partitions=sorted(p.partition for p in parts)))
    consume_and_commit(c)


def run_confluent_consumer_protocol(addr, topic, group):
    """KIP-848: the broker assigns; the session and heartbeat interval are the broker's.
    Assignments arrive incrementally, so the whole one is tracked here."""
    from confluent_kafka import Consumer

    c = Consumer(
        {
            "bootstrap.servers": addr,
            "group.id": group,
            "group.protocol": "consumer",
            "client.id": "ck848-member",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    owned = set()

    def assigned(_c, parts):
        owned.update(p.partition for p in parts)
        emit(event="assigned", partitions=sorted(owned))

    def revoked(_c, parts):
        owned.difference_update(p.partition for p in parts)
        emit(event="assigned", partitions=sorted(owned))

    c.subscribe([topic], on_assign=assigned, on_revoke=revoked, on_lost=revoked)
    consume_and_commit(c)


def run_kafka_python(addr, topic, group):
    from kafka import ConsumerRebalanceListener, KafkaConsumer

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            pass

        def on_partitions_assigned(self, assigned):
            emit(event="assigned", partitions=sorted(tp.partition for tp in assigned))

    c = KafkaConsumer(
        bootstrap_servers=addr,
        group_id=group,
        client_id="kp-member",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
    )
    c.subscribe([topic], listener=Listener())
    while not stopping:
        batches = c.poll(timeout_ms=200)
        for tp, records in batches.items():
            for r in records:
                emit(event="record", partition=tp.partition, offset=r.offset, value=r.value.decode())
        if batches:
            c.commit()
    c.close()


async def run_aiokafka(addr, topic, group):
    from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener

    class Listener(ConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked):
            pass

        async def on_partitions_assigned(self, assigned):
            emit(event="assigned", partitions=sorted(tp.partition for tp in assigned))

    c = AIOKafkaConsumer(
        bootstrap_servers=addr,
        group_id=group,
        client_id="aio-member",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
    )
    c.subscribe([topic], listener=Listener())
    await c.start()
    try:
        while not stopping:
            batches = await c.getmany(timeout_ms=200)
            for tp, records in batches.items():
                for r in records:
                    emit(event="record", partition=tp.partition, offset=r.offset, value=r.value.decode())
            if batches:
                await c.commit()
    finally:
        await c.stop()


def main():
    client, addr, topic, group = sys.argv[1:5]
    signal.signal(signal.SIGTERM, on_sigterm)
    if client == "confluent-kafka":
        run_confluent(addr, topic, group)
    elif client == "confluent-kafka-consumer":
        run_confluent_consumer_protocol(addr, topic, group)
    elif client == "kafka-python":
        run_kafka_python(addr, topic, group)
    elif client == "aiokafka":
        asyncio.run(run_aiokafka(addr, topic, group))
    else:
        sys.exit(f"unknown client {client}")


if __name__ == "__main__":
    main()
