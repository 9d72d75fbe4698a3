"""Faust agents: ingest-side routing, the album assembler and the sink agents."""
