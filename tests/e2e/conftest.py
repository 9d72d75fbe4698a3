"""End-to-end tier: real worker processes against the local stack."""

from tests.integration.conftest import kafka

__all__ = ["kafka"]
