"""Event models of the wire contract and their validation."""
