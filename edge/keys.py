"""The device's signing key and boot counter: created on first start, kept private, checked at every start."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

from coap_server.files import sync_dir
from ledger import Ed25519Signer, device_id_for

from .errors import KeyFileError, WrongDevice

_sodium_sign: Callable[[bytes, bytes], bytes] | None
_sodium_keypair: Callable[[bytes], tuple[bytes, bytes]] | None
try:  # libsodium signs about 1.6x faster than OpenSSL here; signatures are identical (Ed25519 is deterministic)
    from nacl.bindings import crypto_sign as _sodium_sign
    from nacl.bindings import crypto_sign_seed_keypair as _sodium_keypair
except ImportError:  # pragma: no cover - the fast path is optional
    _sodium_sign = None
    _sodium_keypair = None

SEED_BYTES = 32


class DeviceKey:
    """A ledger Signer for this device's Ed25519 key. The private half never appears in repr or logs."""

    __slots__ = ("_fallback", "_public", "_secret", "device_id")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_BYTES:
            raise KeyFileError(f"device key: expected a {SEED_BYTES}-byte Ed25519 seed, got {len(seed)} bytes")
        self._fallback = Ed25519Signer.from_seed(seed)
        self._public = self._fallback.public_key
        self._secret: bytes | None = None
        if _sodium_keypair is not None:
            public, secret = _sodium_keypair(seed)
            if public != self._public:  # pragma: no cover - would mean a broken library
                raise KeyFileError("libsodium and OpenSSL derive different public keys from one seed")
            self._secret = secret
        self.device_id = device_id_for(self._public)

    @property
    def public_key(self) -> bytes:
        return self._public

    def sign(self, data: bytes) -> bytes:
        if self._secret is not None and _sodium_sign is not None:
            return _sodium_sign(data, self._secret)[:64]
        return self._fallback.sign(data)

    def seed(self) -> bytes:
        return self._fallback.seed()

    def __repr__(self) -> str:
        return f"DeviceKey(device_id={self.device_id.hex()})"

    __str__ = __repr__


def check_private(path: Path) -> None:
    """Refuse a key file that is not a regular file or that group or others may read or write."""
    try:
        info = path.lstat()
    except OSError as exc:
        raise KeyFileError(f"key file {path}: cannot read it ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise KeyFileError(f"key file {path}: expected a regular file, found another kind of file "
                           "(a symlink or device)")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise KeyFileError(f"key file {path} is open to other users: expected mode 0600, found {mode:04o}",
                           hint=f"run: chmod 600 {path}  (and consider the key exposed if others used it)")


def load_or_create(path: str | os.PathLike[str], *, store: str | os.PathLike[str] | None = None) -> DeviceKey:
    """Load the device key, creating it with mode 0600 on first start.

    With `store` (the data dir's LMDB store), a missing key over a store that a device has already claimed
    stops with WRONG_DEVICE before anything is written: the key was lost, and a new one would be another
    device, which that store refuses, with its key file left behind looking like the real one."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        check_private(path)
        seed = path.read_bytes()
        if len(seed) != SEED_BYTES:
            raise KeyFileError(f"key file {path}: expected {SEED_BYTES} bytes of Ed25519 seed, found {len(seed)}",
                               hint="restore the key from its backup; a new key is a new device")
        return DeviceKey(seed)
    if store is not None:
        refuse_lost_key(path, Path(store))
    path.parent.mkdir(parents=True, exist_ok=True)
    seed = Ed25519Signer.generate().seed()
    tmp = path.with_name(path.name + ".new")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, seed)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)  # the key appears whole or not at all
    sync_dir(path.parent)
    return DeviceKey(seed)


def refuse_lost_key(path: Path, store: Path) -> None:
    """WRONG_DEVICE when the store at `store` belongs to a device (its first start claimed it for its key) while
    that device's key file `path` is missing. The owner is read from the store opened read-only; a store not
    there yet, or never claimed, lets a first start make its key."""
    if not (store / "data.mdb").exists():
        return
    from .store import LmdbLogStore  # lmdb only when there is a store to read

    opened = LmdbLogStore(store, readonly=True)
    try:
        owner = opened.own_device()
    finally:
        opened.close()
    if owner is not None:
        raise WrongDevice(
            f"key file {path} is missing, but the store at {store} belongs to device {owner.hex()}; no key was made",
            where="data_dir",
            hint="put back the device.key this store was written with (from the backup of the data dir, e.g. "
                 "/var/backups/jejak-edge); a new key would be a new device, which this store refuses. If the key "
                 "is lost for good, so is this device's identity: start a new device on an empty data_dir and "
                 "enroll it with the hub's QR code (python -m edge.restore fetches a log by its device's key, so "
                 "it cannot bring this one back)")


def next_boot(path: str | os.PathLike[str], *, at_least: int = 0) -> int:
    """Increment and persist the boot counter; return this boot's number (1 on the first start).

    `at_least` lets the caller keep the counter ahead of what the log already holds (after the counter
    file was lost), since a boot counter that goes backwards breaks the chain.
    """
    path = Path(path)
    current = 0
    if path.exists():
        text = path.read_text().strip()
        if not text.isdigit():
            raise KeyFileError(f"boot counter {path}: expected a non-negative integer, found {text[:20]!r}",
                               hint="delete it: the daemon restarts the count above the log's last boot")
        current = int(text)
    boot = max(current + 1, at_least)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".new")
    with open(tmp, "w") as fh:
        fh.write(f"{boot}\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    sync_dir(path.parent)
    return boot
