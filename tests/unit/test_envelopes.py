"""Envelopes of internal commands: Kafka's partition for each key, size limits, reading back."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner

from agents.envelopes import Envelopes, commands_of, partition_for


@pytest.mark.parametrize("partitions", [1, 4, 8, 13])
def test_partition_is_the_one_kafkas_default_partitioner_gives_the_json_key(
    partitions: int,
) -> None:
    # Faust routes table keys (and web-view requests) with this partitioner on JSON keys
    default = DefaultPartitioner()
    for key in ["1", "42", "1001", str(3 * 10**9 + 17), "-5"]:
        expected = default(orjson.dumps(key), list(range(partitions)), list(range(partitions)))
        assert partition_for(key, partitions) == expected


def _read(messages: list[Any]) -> list[tuple[str, int, str, dict[str, Any]]]:
    out = []
    for topic, key, value, partition in messages:
        assert key is None
        for k, command in commands_of(None, orjson.loads(value)):
            out.append((topic, partition, k, command))
    return out


def test_every_command_travels_in_the_partition_of_its_key_in_order() -> None:
    env = Envelopes(4)
    sent = [("t", str(i), {"n": i}) for i in range(100)] + [("u", "7", {"n": 100})]
    for topic, key, command in sent:
        env.add(topic, key, command)
    messages = env.messages()
    assert len(messages) <= 8  # one per (topic, partition)
    read = _read(messages)
    assert sorted(c["n"] for _, _, _, c in read) == list(range(101))
    for topic, partition, key, _ in read:
        assert partition == partition_for(key, 4)
        assert topic in ("t", "u")
    # order is kept within a partition
    by_partition: dict[int, list[int]] = {}
    for topic, partition, _, command in read:
        if topic == "t":
            by_partition.setdefault(partition, []).append(command["n"])
    assert all(ns == sorted(ns) for ns in by_partition.values())


def test_envelopes_stay_under_their_byte_and_count_limits() -> None:
    env = Envelopes(1, max_bytes=2000, max_commands=10)
    for i in range(100):
        env.add("t", str(i), {"text": "x" * 100})
    messages = env.messages()
    assert all(len(value) <= 2000 for _, _, value, _ in messages)
    assert all(len(orjson.loads(value)["commands"]) <= 10 for _, _, value, _ in messages)
    assert len(_read(messages)) == 100


def test_a_command_larger_than_an_envelope_travels_alone() -> None:
    env = Envelopes(1, max_bytes=500)
    env.add("t", "1", {"text": "small"})
    env.add("t", "2", {"text": "y" * 2000})
    env.add("t", "3", {"text": "small"})
    messages = env.messages()
    assert [len(orjson.loads(v)["commands"]) for _, _, v, _ in messages] == [1, 1, 1]


def test_a_plain_message_is_one_command_and_a_malformed_entry_is_named() -> None:
    assert list(commands_of("9", {"type": "tick"})) == [("9", {"type": "tick"})]
    out = list(commands_of(None, {"type": "batch", "commands": [["1", {"a": 1}], "junk"]}))
    assert out[0] == ("1", {"a": 1})
    assert out[1] == (None, {"type": "malformed", "entry": "junk"})
    assert list(commands_of("k", "not a dict")) == [
        ("k", {"type": "malformed", "entry": "not a dict"})
    ]
