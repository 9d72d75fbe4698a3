"""The root error of the storage clients, with a retry flag (see STYLE.md, 9)."""

from __future__ import annotations


class StorageError(Exception):
    """A store could not do what was asked. `retriable`: trying again may succeed."""

    retriable: bool = False


class StoreTimeout(StorageError):
    """A store did not answer within its time: up but hung, or far too slow. Retriable."""

    retriable = True
