"""The table agents in Faust's in-memory test context: no broker, a memory store, sends captured."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

import agents.assembler as assembler_module
import agents.post_index as post_index_module
from agents.direct import Message
from agents.envelopes import commands_of, partition_for
from schemas.dlq import DlqRecord
from streams.app import app
from streams.generator import GeneratorConfig, generate
from streams.settings import settings
from streams.topics import ALBUM_ASSEMBLED, ALBUMS_DLQ, OUTBOX
from tables.declarations import album_state, post_index

# Tables keep their data in the app's store; for the test context that is memory, not RocksDB.
app.conf.store = "memory://"


class Captured:
    """What the table agents sent, by kind (the driver's send, at the producer's boundary)."""

    def __init__(self) -> None:
        self.emitted: list[dict[str, Any]] = []
        self.dead: list[DlqRecord] = []
        self.forwarded: list[tuple[str, dict[str, Any]]] = []
        self.changelog: list[Message] = []

    async def send(self, messages: Sequence[Message]) -> None:
        for topic, key, value, partition in messages:
            if topic in (ALBUM_ASSEMBLED, OUTBOX):
                self.emitted.append(orjson.loads(value))
            elif topic == ALBUMS_DLQ:
                assert value is not None
                self.dead.append(DlqRecord.decode(value))
            elif topic.endswith("-changelog"):
                self.changelog.append((topic, key, value, partition))
            else:
                assert value is not None
                assert partition is not None
                for k, command in commands_of(None, orjson.loads(value)):
                    # each command travels in the partition of its key
                    assert partition_for(k, settings.topic_partitions) == partition
                    self.forwarded.append((k, command))


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Captured:
    c = Captured()
    for module in (assembler_module, post_index_module):
        monkeypatch.setattr(module.driver, "assignment", lambda: frozenset({0}))
        monkeypatch.setattr(module.driver, "send", c.send)
        module.driver.invalidate()
    album_state.data.clear()
    post_index.data.clear()
    return c


def commands(albums: int, seed: int, **knobs: Any) -> list[tuple[str, dict[str, Any]]]:
    """album-events commands as the router sends them: parsed albums and vision with album_id."""
    gen = generate(GeneratorConfig(albums=albums, seed=seed, album_id_share=1.0, **knobs))
    out = []
    for r in gen.records:
        event = orjson.loads(r.value)
        kind = "parsed" if r.kind == "parsed" else "vision"
        out.append(
            (str(r.album_id), {"type": kind, "album" if kind == "parsed" else "event": event})
        )
    return out


async def test_assembler_emits_each_album_once_whatever_the_order(captured: Captured) -> None:
    cmds = commands(20, seed=3, duplicate_share=0.2)
    random.Random(5).shuffle(cmds)
    async with assembler_module.assembler.test_context() as agent:
        for key, value in cmds:
            await agent.put(value, key=key)
    emitted = sorted(captured.emitted, key=lambda a: a["album_id"])
    assert [a["album_id"] for a in emitted] == list(range(1, 21))
    assert {(a["status"], a["version"]) for a in emitted} == {("complete", 1)}
    assert all(a["items_analyzed"] == a["items_count"] for a in emitted)
    assert captured.dead == []
    # the table keeps every album, assembled
    assert len(album_state.data) == 20


async def test_assembler_ignores_a_repeated_album_after_assembly(captured: Captured) -> None:
    cmds = commands(1, seed=4)
    async with assembler_module.assembler.test_context() as agent:
        for key, value in cmds:
            await agent.put(value, key=key)
        for key, value in cmds:  # everything again, parsed album included
            await agent.put(value, key=key)
    assert len(captured.emitted) == 1


async def test_assembler_dead_letters_a_bad_command_and_goes_on(captured: Captured) -> None:
    cmds = commands(1, seed=6)
    async with assembler_module.assembler.test_context() as agent:
        await agent.put({"type": "rename"}, key="1")
        await agent.put({"type": "parsed", "album": {"album_id": "x"}}, key="1")
        for key, value in cmds:
            await agent.put(value, key=key)
    assert [d.stage for d in captured.dead] == ["assembler", "assembler"]
    assert [d.error_type for d in captured.dead] == ["unknown_command", "malformed_command"]
    assert [a["album_id"] for a in captured.emitted] == [1]


async def test_post_index_holds_vision_until_its_index_entry_arrives(captured: Captured) -> None:
    vision = next(v for _, v in commands(1, seed=8) if v["type"] == "vision")["event"]
    vision = {k: v for k, v in vision.items() if k != "album_id"}  # routed by post_id
    post_id = vision["post_id"]
    entry = {"type": "index", "post_id": post_id, "album_id": 1, "tenant_id": "acme"}
    async with post_index_module.post_indexer.test_context() as agent:
        await agent.put({"type": "vision", "event": vision}, key=str(post_id))
        assert captured.forwarded == []  # buffered: the album of this post is not known yet
        await agent.put(entry, key=str(post_id))
        await agent.put(entry, key=str(post_id))  # a duplicate entry releases nothing more
        await agent.put({"type": "vision", "event": vision}, key=str(post_id))
    keys = [k for k, _ in captured.forwarded]
    assert keys[0] == "1"
    forwarded = captured.forwarded[0][1]
    assert forwarded["type"] == "vision"
    assert forwarded["event"]["album_id"] == 1
    assert forwarded["event"]["post_id"] == post_id
    assert captured.dead == []
