"""Neo4j in the local stack answers Cypher through the async Python driver, with auth."""

from __future__ import annotations

import pytest
from neo4j import AsyncGraphDatabase
from neo4j.exceptions import AuthError

from streams.settings import Settings


async def test_cypher_merge_match_in_order(neo4j_settings: Settings, unique: str) -> None:
    s = neo4j_settings
    label = f"ItAlbum_{unique}"
    async with AsyncGraphDatabase.driver(
        s.neo4j_uri, auth=(s.neo4j_user, s.neo4j_password.get())
    ) as driver:
        await driver.verify_connectivity()
        try:
            for _ in range(2):  # MERGE twice: still one album, three posts
                await driver.execute_query(
                    f"MERGE (a:{label} {{album_id: $album_id}}) "
                    "WITH a UNWIND $posts AS p "
                    f"MERGE (post:{label}Post {{post_id: p.post_id}}) "
                    "MERGE (a)-[c:CONTAINS]->(post) SET c.position = p.position",
                    album_id=42,
                    posts=[{"post_id": 1000 + i, "position": 2 - i} for i in range(3)],
                )
            records, _, _ = await driver.execute_query(
                f"MATCH (a:{label} {{album_id: 42}})-[c:CONTAINS]->(p) "
                "RETURN p.post_id AS post_id ORDER BY c.position"
            )
            assert [r["post_id"] for r in records] == [1002, 1001, 1000]
            count, _, _ = await driver.execute_query(f"MATCH (a:{label}) RETURN count(a) AS n")
            assert count[0]["n"] == 1
        finally:
            await driver.execute_query(
                f"MATCH (n) WHERE n:{label} OR n:{label}Post DETACH DELETE n"
            )


async def test_wrong_password_is_refused(neo4j_settings: Settings) -> None:
    s = neo4j_settings
    async with AsyncGraphDatabase.driver(s.neo4j_uri, auth=(s.neo4j_user, "wrong-password")) as d:
        with pytest.raises(AuthError):
            await d.verify_connectivity()
