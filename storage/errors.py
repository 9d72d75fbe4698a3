"""The root error of the storage clients, with a retry flag (see STYLE.md, 9)."""

from __future__ import annotations


class StorageError(Exception):
    """A store could not do what was asked. `retriable`: trying again may succeed."""

    retriable: bool = False


class StoreTimeout(StorageError):
    """A store did not answer within its time: up but hung, or far too slow. Retriable."""

    retriable = True


class TenantConflict(StorageError):
    """An album's id is held in the store by another tenant: writing it would overwrite that
    tenant's data, so it is refused (its dead letter names the id, never the other tenant's
    data). Not retriable."""

    #: its DLQ error_type
    error_type = "tenant_conflict"

    def __init__(self, store: str, ids: list[int]) -> None:
        shown = ", ".join(str(i) for i in sorted(ids)[:10])
        more = f" and {len(ids) - 10} more" if len(ids) > 10 else ""
        super().__init__(
            f"tenant_conflict: {store} holds album {shown}{more} for another tenant; "
            "not overwritten"
        )
        self.ids = sorted(ids)
