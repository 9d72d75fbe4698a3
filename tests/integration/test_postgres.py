"""Postgres in the local stack answers SQL through SQLAlchemy async + asyncpg."""

from __future__ import annotations

import json

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine


async def test_sql_round_trip_with_jsonb(postgres_url: str, unique: str) -> None:
    engine = create_async_engine(postgres_url)
    table = f"it_pg_{unique}"
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"CREATE TABLE {table} (id bigint PRIMARY KEY, meta jsonb)"))
            await conn.execute(
                text(f"INSERT INTO {table} VALUES (:id, CAST(:meta AS jsonb))"),
                [
                    {"id": 1, "meta": json.dumps({"enrichment": {"version": 1}})},
                    {"id": 2, "meta": json.dumps({"other": True})},
                ],
            )
            # an upsert that merges one key of the JSONB document and keeps the others
            await conn.execute(
                text(
                    f"INSERT INTO {table} VALUES (2, CAST(:m AS jsonb)) ON CONFLICT (id) "
                    f"DO UPDATE SET meta = {table}.meta || EXCLUDED.meta"
                ),
                {"m": json.dumps({"enrichment": {"version": 2}})},
            )
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        f"SELECT id, (meta->'enrichment'->>'version')::int, meta ? 'other' "
                        f"FROM {table} ORDER BY id"
                    )
                )
            ).all()
        assert [tuple(r) for r in rows] == [(1, 1, False), (2, 2, True)]
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
        await engine.dispose()


async def test_transaction_rollback_leaves_nothing(postgres_url: str, unique: str) -> None:
    engine = create_async_engine(postgres_url)
    table = f"it_pg_rb_{unique}"
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"CREATE TABLE {table} (id int PRIMARY KEY)"))
        async with engine.connect() as conn:
            tx = await conn.begin()
            await conn.execute(text(f"INSERT INTO {table} VALUES (1)"))
            await tx.rollback()
        async with engine.connect() as conn:
            count = (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
        assert count == 0
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
        await engine.dispose()
