"""Engine partitions: shards of the device topics, the world publishing on them, and one partition
of the engine taking only its own.

The world and every partition must agree on a device's shard without asking each other; a partition
must provision, accept and count only what is on its shards, and number what it makes so that no
two partitions' ids collide. (tests/integration/test_partitions.py runs N partitions through a real
broker and compares them with one engine.)
"""

from __future__ import annotations

import zlib
from pathlib import Path

import msgspec
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts import EngineConfig, IssueType, Kind, ThresholdRule, Topics, codec
from contracts.codec import encode_batch
from contracts.engine_config import CampaignRule, Technician
from contracts.errors import PartitionError, TopicError
from contracts.messages import Clock, ClockAck, DeviceRecord
from contracts.partitions import Partition, check_partitionable, fleet_wide_decisions
from contracts.topics import shard_of
from sim.scenario_file import load, with_overrides
from sim.world import World
from support_engine.errors import ConfigError
from support_engine.service import EngineService
from support_engine.storage import Storage
from support_engine.transport import MemoryTransport

ROOT = Path(__file__).resolve().parents[2]
CONFIG = EngineConfig(
    policy="proactive",
    rules=[ThresholdRule(name="hot", sensor="temp", above=10.0, for_s=0.0, issue="cooling")],
    issues={"cooling": IssueType(skill="refrigeration", parts=["compressor"])},
)


# -- shards and topics ---------------------------------------------------------------------------
def test_a_shard_is_crc32_of_the_id_so_every_process_agrees() -> None:
    for key in ("freezers-gw000", "printer-000169", "ü-gw"):
        assert shard_of(key, 7) == zlib.crc32(key.encode()) % 7
    assert [shard_of(f"freezers-gw{g:03d}", 4) for g in range(6)] == [
        zlib.crc32(f"freezers-gw{g:03d}".encode()) % 4 for g in range(6)
    ]
    assert shard_of("anything", 1) == 0


@given(st.integers(2, 64), st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True))
def test_sharded_topics_parse_back_to_their_kind_key_and_shard(shards: int, key: str) -> None:
    topics = Topics("t/v1", shards=shards)
    shard = topics.shard_of(key)
    built = {
        Kind.TELEMETRY: topics.telemetry(key, shard),
        Kind.EVENT: topics.event(key, shard),
        Kind.BATCH: topics.batch(key),
        Kind.CONTACT: topics.contact(key, shard),
        Kind.FIELD_STATUS: topics.field_status(key, shard),
        Kind.REGISTRY: topics.registry(key, shard),
    }
    for kind, topic in built.items():
        assert topic.startswith(f"t/v1/s/{shard}/")
        assert topics.parse(topic) == (kind, key, shard)
    assert topics.parse(topics.command(key)) == (Kind.COMMAND, key, 0)  # commands carry no shard


def test_a_topic_without_its_shard_level_or_with_a_wrong_one_is_refused() -> None:
    sharded, plain = Topics("t/v1", shards=4), Topics("t/v1")
    with pytest.raises(TopicError, match="no shard level"):
        sharded.parse("t/v1/gw/g1/batch")
    with pytest.raises(TopicError, match="shard '4' is not one of 0-3"):
        sharded.parse("t/v1/s/4/gw/g1/batch")
    with pytest.raises(TopicError, match="only device messages"):
        sharded.parse("t/v1/s/1/dev/d1/cmd")
    with pytest.raises(TopicError, match="names a shard"):
        plain.parse("t/v1/s/0/dev/d1/telemetry")
    with pytest.raises(TopicError, match="shard 9 is not one of"):
        sharded.telemetry("d1", 9)
    assert plain.telemetry("d1", 3) == "t/v1/dev/d1/telemetry"  # one shard: no shard level at all


def test_a_partition_subscribes_to_its_own_shards_and_the_clock_only() -> None:
    topics = Topics("t/v1", shards=4)
    filters = topics.engine_subscriptions(Partition(1, 2, 4).owned)
    assert Partition(1, 2, 4).owned == [1, 3]
    assert {f.split("/")[3] for f in filters if "/s/" in f} == {"1", "3"}
    assert "t/v1/clock" in filters and len(filters) == 2 * 6 + 1
    assert Topics("t/v1").engine_subscriptions() == [
        "t/v1/dev/+/telemetry", "t/v1/dev/+/event", "t/v1/gw/+/batch", "t/v1/contact/+",
        "t/v1/field/+/status", "t/v1/registry/+", "t/v1/clock",
    ]  # fmt: skip


# -- partitions ----------------------------------------------------------------------------------
def test_partition_specs_are_checked_with_a_message_that_says_what_to_give() -> None:
    assert Partition.parse("1/3") == Partition(1, 3, 3)
    assert Partition.parse("0/2", shards=8).owned == [0, 2, 4, 6]
    for bad in ("2/2", "1", "a/b", "-1/2", "0/0"):
        with pytest.raises(PartitionError, match="K/N"):
            Partition.parse(bad)
    with pytest.raises(PartitionError, match="3 shards cannot be shared by 4 partitions"):
        Partition.parse("0/4", shards=3)


def test_a_partition_counts_only_the_clocks_messages_on_its_shards() -> None:
    part = Partition(1, 2, 4)
    assert part.expected(Clock(t=1.0, published=10, shards=[1, 2, 3, 4])) == 2 + 4
    assert part.expected(Clock(t=1.0, published=12, shards=[1, 2, 3, 4])) == 2 + 4 + 2  # unsharded ones: everyone's
    assert part.expected(Clock(t=1.0, published=10)) == 10  # a world without shards
    with pytest.raises(PartitionError, match="start the engine with the world's --shards"):
        part.expected(Clock(t=1.0, published=3, shards=[1, 2]))


def test_fleet_wide_decisions_refuse_partitions_and_are_named() -> None:
    rollout = msgspec.structs.replace(
        CONFIG, issues={**CONFIG.issues, "fw": IssueType(skill="x", remote="ota", ota_version="2", rollout_after=5)}
    )
    assert fleet_wide_decisions(rollout) == ["issues.fw.rollout_after"]
    assert fleet_wide_decisions(msgspec.structs.replace(rollout, policy="reactive")) == []  # reactive never rolls out
    campaign = msgspec.structs.replace(CONFIG, campaigns=[CampaignRule(name="c", by="batch", ota_version="2")])
    assert fleet_wide_decisions(campaign) == ["campaigns"]
    techs = msgspec.structs.replace(CONFIG, technicians=[Technician(id="t1")])
    with pytest.raises(PartitionError, match=r"technicians .*run it with one engine"):
        check_partitionable(techs, Partition(0, 2, 2))
    check_partitionable(techs, Partition())  # one engine decides everything
    check_partitionable(CONFIG, Partition(0, 2, 2))


# -- the world on shards -------------------------------------------------------------------------
def _small_world(shards: int, days: float = 2.0) -> World:
    s = load(ROOT / "scenarios" / "freezers.yaml")
    fleets = [{**msgspec.to_builtins(f), "count": 400, "devices_per_gateway": 25} for f in s.fleets]
    s = with_overrides(s, fleets=fleets, duration_days=days)
    return World(s, seed=3, topics=Topics("w/v1", shards=shards))


def test_the_world_publishes_every_device_message_on_its_gateways_shard_and_counts_them_per_shard() -> None:
    world = _small_world(shards=3)
    topics = world.topics
    gateway_of = {r.device_id: r.gateway_id for r in world.registry()}
    assert all(gateway_of.values()), "every registry entry names its gateway"
    per_shard = np.zeros(3, dtype=np.int64)
    seen_kinds = set()
    for t in np.arange(3600.0, world.scenario.duration_s + 1, 3600.0):
        for topic, payload in world.advance(float(t)):
            kind, key, shard = topics.parse(topic)
            seen_kinds.add(kind)
            if kind is Kind.BATCH:
                assert shard == shard_of(key, 3)
                devices = codec.decode_batch(payload).devices
                assert {shard_of(gateway_of[d], 3) for d in devices} == {shard}
            else:
                device = codec.decode(kind, payload, key=key).device_id  # type: ignore[union-attr]
                assert shard == shard_of(gateway_of[device], 3), topic
            per_shard[shard] += 1
    assert {
        Kind.BATCH,
        Kind.CONTACT,
    } <= seen_kinds  # events and field statuses follow the engine: see the integration test
    assert per_shard.sum() == world.published  # no duplicates in this fleet: every message counted once
    assert per_shard.tolist() == world.published_by_shard.tolist()
    assert (per_shard > 0).all()


def test_shards_change_the_topics_and_nothing_else_in_the_world() -> None:
    one, three = _small_world(shards=1, days=1.0), _small_world(shards=3, days=1.0)
    strip = Topics("w/v1", shards=3)
    for t in np.arange(3600.0, 86400.0 + 1, 3600.0):
        a, b = one.advance(float(t)), three.advance(float(t))
        assert [p for _, p in a] == [p for _, p in b]
        assert [one.topics.parse(x)[:2] for x, _ in a] == [strip.parse(y)[:2] for y, _ in b]
    assert one.published == three.published and one.readings == three.readings


# -- one partition of the engine -----------------------------------------------------------------
TOPICS4 = Topics("p/v1", shards=4)


def _gateways_of(shard: int, n: int) -> list[str]:
    found = [f"gw-{g:03d}" for g in range(200) if shard_of(f"gw-{g:03d}", 4) == shard]
    return found[:n]


def _batch(gateway: str, t: float, temps: list[float]) -> tuple[str, bytes]:
    roster = [f"{gateway}-d{k}" for k in range(len(temps))]
    payload = encode_batch(
        gateway_id=gateway, ts=t, boot_id=0, seq=int(t // 3600), devices=roster, index=np.arange(len(temps)),
        reading_ts=np.full(len(temps), t), reading_seq=np.full(len(temps), int(t // 3600)), values={"temp": temps},
    )  # fmt: skip
    return TOPICS4.batch(gateway), payload


def _drive(engine: EngineService, transport: MemoryTransport) -> None:
    for _ in range(200):
        engine.poll(timeout_s=0)
        if transport.inbox.empty() and engine._clock is None:
            return


def test_a_partition_provisions_accepts_and_counts_only_its_own_shards(tmp_path: Path) -> None:
    part = Partition(1, 2, 4)  # shards 1 and 3
    mine, theirs = _gateways_of(1, 1)[0], _gateways_of(2, 1)[0]
    transport = MemoryTransport()
    engine = EngineService(
        CONFIG, transport, Storage(tmp_path / "p1.sqlite"), topics=TOPICS4, clock="event", partition=part
    )
    records = [DeviceRecord(device_id=f"{g}-d{k}", gateway_id=g) for g in (mine, theirs) for k in range(2)]
    engine.provision(records)
    assert sorted(engine.core.devices) == [f"{mine}-d0", f"{mine}-d1"]
    engine.start()
    assert transport.subscriptions == TOPICS4.engine_subscriptions([1, 3])

    transport.offer(*_batch(mine, 3600.0, [20.0, 4.0]))  # one hot device: a case
    wrong = _batch(theirs, 3600.0, [20.0, 20.0])
    transport.offer(wrong[0].replace("/s/2/", "/s/1/"), wrong[1])  # a gateway on another's shard
    clock = Clock(t=3600.0, published=9, shards=[4, 2, 2, 1])  # shards 1 and 3: 3 messages, 2 here so far
    transport.offer(TOPICS4.clock, codec.encode(clock))
    _drive(engine, transport)
    assert engine.counters["msg_rejected_topic"] == 1
    assert not [t for t, _, _ in transport.published if t == TOPICS4.clock_ack]  # waits for the third
    transport.offer(*_batch(_gateways_of(3, 1)[0], 3600.0, [4.0]))
    _drive(engine, transport)
    acks = [codec.decode(Kind.CLOCK_ACK, p) for t, p, _ in transport.published if t == TOPICS4.clock_ack]
    assert len(acks) == 1 and isinstance(acks[0], ClockAck)
    assert acks[0].partition == 1 and acks[0].received == 3
    assert engine.core.stats["cases_opened"] == 1
    assert all("-p1-" in case_id for case_id in engine.core.cases)  # ids no other partition makes


def test_a_clock_from_a_world_with_other_shards_is_rejected_with_what_to_do(tmp_path: Path) -> None:
    transport = MemoryTransport()
    engine = EngineService(
        CONFIG, transport, Storage(tmp_path / "p0.sqlite"), topics=TOPICS4, clock="event", partition=Partition(0, 2, 4)
    )
    engine.start()
    transport.offer(TOPICS4.clock, codec.encode(Clock(t=1.0, published=0, shards=[0, 0])))
    _drive(engine, transport)
    assert engine.counters["msg_rejected_shards"] == 1
    assert not [t for t, _, _ in transport.published if t == TOPICS4.clock_ack]


def test_a_partition_whose_topics_have_other_shards_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="the topics have 2 shards and the partition 4"):
        EngineService(
            CONFIG,
            MemoryTransport(),
            Storage(tmp_path / "x.sqlite"),
            topics=Topics(shards=2),
            partition=Partition(0, 2, 4),
        )
