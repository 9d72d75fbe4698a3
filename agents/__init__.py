"""The stages: the router, the table agents (assembler, post index), the relay, the sinks."""
