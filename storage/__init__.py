"""Async storage clients: S3, Postgres, Qdrant, Neo4j; Telegram ingestion."""
