"""Typed errors of the edge daemon, each with a stable code that CoAP diagnostics, logs and exit codes use."""

from __future__ import annotations

from ledger.errors import CodedError


class EdgeError(CodedError):
    """Base of every error the edge raises on purpose. `code` is stable; `hint` says what to do."""

    code = "EDGE_ERROR"
    coap = "5.00"
    http = 500
    exit_code = 30

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" + (f" ({self.hint})" if self.hint else "")


class ConfigError(EdgeError):
    code = "CONFIG"
    coap = "5.00"
    http = 500
    exit_code = 31


class KeyFileError(EdgeError):
    """The device key file is missing, unreadable, malformed or readable by others."""

    code = "KEY_FILE"
    coap = "5.00"
    http = 500
    exit_code = 32


class StoreError(EdgeError):
    code = "STORE_ERROR"
    coap = "5.00"
    http = 500
    exit_code = 33


class StoreLayoutError(StoreError):
    """The data directory was written by a layout this release does not know."""

    code = "STORE_LAYOUT"
    coap = "5.00"
    http = 500
    exit_code = 34


class StoreFull(StoreError):
    """LMDB's map or the file system under it is full. Nothing was written by the failed commit; what was
    acknowledged stays."""

    code = "STORE_FULL"
    coap = "5.03"
    http = 507
    retry_after_s = 60
    exit_code = 35


class StorageFailing(StoreError):
    """The storage device refused a write while its file system had room: a failing SD card, not a full one.
    Nothing of that write was stored."""

    code = "STORE_FAILING"
    coap = "5.00"
    http = 500
    exit_code = 53


class StoreCorrupt(StoreError):
    """The LMDB file is damaged or truncated. Nothing is written to it; the log comes back from replicas."""

    code = "STORE_CORRUPT"
    coap = "5.00"
    http = 500
    exit_code = 39


class DamagedRecord(StoreError):
    """A stored record whose bytes no longer hash to its id: it is never served to a peer or the hub, and
    comes back from a peer or the hub that holds it."""

    code = "RECORD_DAMAGED"
    coap = "5.03"
    http = 503
    exit_code = 52
    retry_after_s = 300


class StoreBusy(StoreError):
    """Too many appends are waiting for their commit: back-pressure, try again shortly."""

    code = "BUSY"
    coap = "5.03"
    http = 503
    retry_after_s = 1
    exit_code = 36


class StaleHead(StoreError):
    """Own records were built on a head that is no longer the stored one (records of this device
    arrived from a peer meanwhile); the writer rebuilds on the stored head and signs again."""

    code = "STALE_HEAD"
    coap = "5.00"
    http = 500


class DeviceBlocked(StoreError):
    """A device whose log forked: nothing more of it is stored until an operator acts."""

    code = "DEVICE_BLOCKED"
    coap = "4.09"
    http = 409
    exit_code = 37


class WrongDevice(StoreError):
    """The data directory belongs to another device key than the one loaded."""

    code = "WRONG_DEVICE"
    coap = "4.03"
    http = 403
    exit_code = 38
