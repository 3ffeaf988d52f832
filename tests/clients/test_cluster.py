"""Unmodified clients against a real local cluster started with `faultline cluster`
(3 controllers and 3 brokers, each its own process): replication factor 3, acks=all and
min.insync.replicas=2 while the partition leader and the active controller are killed
with SIGKILL, then restarted with the command the cluster printed for them."""

import re
import subprocess
import threading
import time
import uuid

from confluent_kafka import Producer as CKProducer
from confluent_kafka.admin import AdminClient, NewTopic


def describe(bootstrap, topic):
    out = subprocess.run(["kcat", "-L", "-b", bootstrap, "-t", topic],
                         capture_output=True, text=True, timeout=30).stdout
    return out


def leader_of(bootstrap, topic, partition=0):
    for _ in range(100):
        m = re.search(rf"partition {partition}, leader (\d+), replicas: ([\d,]+), isrs: ([\d,]+)",
                      describe(bootstrap, topic))
        if m and int(m.group(1)) >= 0:
            return int(m.group(1)), m.group(2), m.group(3)
        time.sleep(0.2)
    raise AssertionError(describe(bootstrap, topic))


def test_metadata_lists_every_broker_and_the_leaders(cluster):
    out = subprocess.run(["kcat", "-L", "-b", cluster.bootstrap], capture_output=True,
                         text=True, timeout=30).stdout
    assert " 3 brokers:" in out, out
    for i in range(3):
        assert f"broker {i + 1} at 127.0.0.1:{cluster.base + i}" in out, out


def test_acks_all_loses_nothing_when_the_leader_and_the_active_controller_die(cluster):
    topic = "orders-" + uuid.uuid4().hex[:8]
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3,
                                            config={"min.insync.replicas": "2"})])
    futures[topic].result(timeout=30)
    leader, replicas, isr = leader_of(cluster.bootstrap, topic)
    assert sorted(replicas.split(",")) == ["1", "2", "3"]

    acked, failed = [], []
    stop = threading.Event()

    def on_delivery(err, msg):
        (failed if err else acked).append(msg.value().decode())

    def produce():
        p = CKProducer({"bootstrap.servers": cluster.bootstrap, "acks": "all",
                        "enable.idempotence": True, "linger.ms": 5,
                        "message.timeout.ms": 60000})
        i = 0
        while not stop.is_set():
            p.produce(topic, value=f"v{i}".encode(), partition=0, on_delivery=on_delivery)
            p.poll(0)
            i += 1
            time.sleep(0.002)
        assert p.flush(90) == 0

    writer = threading.Thread(target=produce)
    writer.start()
    time.sleep(2)
    victim_controller = cluster.active_controller()
    cluster.kill(f"broker-{leader}")
    cluster.kill(victim_controller)
    time.sleep(6)
    new_leader, _, _ = leader_of(cluster.bootstrap, topic)
    assert new_leader != leader
    cluster.restart(f"broker-{leader}")
    cluster.restart(victim_controller)
    time.sleep(4)
    stop.set()
    writer.join(timeout=120)
    assert not writer.is_alive()
    assert len(acked) > 500, (len(acked), failed[:5])

    out = subprocess.run(["kcat", "-C", "-b", cluster.bootstrap, "-t", topic, "-o", "beginning",
                          "-e", "-q", "-f", "%s\n"], capture_output=True, text=True,
                         timeout=60).stdout.split()
    missing = set(acked) - set(out)
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {sorted(missing)[:5]}"
    assert len(out) == len(set(out)), "duplicates with an idempotent producer"
    # The restarted broker catches up and is back in the ISR.
    deadline = time.time() + 30
    while time.time() < deadline:
        _, _, isr = leader_of(cluster.bootstrap, topic)
        if len(isr.split(",")) == 3:
            break
        time.sleep(0.5)
    assert len(isr.split(",")) == 3, describe(cluster.bootstrap, topic)


def test_kafka_python_and_aiokafka_use_every_leader(cluster):
    import asyncio

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka import TopicPartition as AIOTopicPartition
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    topic = "spread-" + uuid.uuid4().hex[:8]
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=3,
                                  config={"min.insync.replicas": "2"})])[topic].result(timeout=30)
    leaders = {leader_of(cluster.bootstrap, topic, p)[0] for p in range(3)}
    assert leaders == {1, 2, 3}, f"placement did not spread leaders: {leaders}"

    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap.split(","), acks="all")
    metas = [producer.send(topic, value=f"kp-{i}".encode(), partition=i % 3) for i in range(90)]
    producer.flush(30)
    assert {m.get(timeout=30).partition for m in metas} == {0, 1, 2}
    producer.close()

    async def aio():
        p = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap, enable_idempotence=True)
        await p.start()
        for i in range(90):
            await p.send_and_wait(topic, value=f"aio-{i}".encode(), partition=i % 3)
        await p.stop()
        c = AIOKafkaConsumer(bootstrap_servers=cluster.bootstrap, enable_auto_commit=False)
        await c.start()
        c.assign([AIOTopicPartition(topic, p) for p in range(3)])
        await c.seek_to_beginning()
        got = []
        deadline = time.time() + 60
        while len(got) < 180 and time.time() < deadline:
            for _, msgs in (await c.getmany(timeout_ms=500)).items():
                got.extend(m.value.decode() for m in msgs)
        await c.stop()
        return got

    got = asyncio.run(aio())
    assert sorted(got) == sorted([f"kp-{i}" for i in range(90)] + [f"aio-{i}" for i in range(90)])

    consumer = KafkaConsumer(bootstrap_servers=cluster.bootstrap.split(","), group_id=None,
                             enable_auto_commit=False)
    consumer.assign([TopicPartition(topic, p) for p in range(3)])
    consumer.seek_to_beginning()
    seen = []
    deadline = time.time() + 60
    while len(seen) < 180 and time.time() < deadline:
        for _, msgs in consumer.poll(timeout_ms=500).items():
            seen.extend(m.value.decode() for m in msgs)
    consumer.close()
    assert sorted(seen) == sorted(got)
