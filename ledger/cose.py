"""COSE_Sign1 (RFC 9052) with EdDSA over Ed25519: build, parse strictly, verify."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import cbor
from .errors import BadSignature, MalformedRecord

_sodium_open: Callable[[bytes, bytes], bytes] | None
_SodiumBad: type[Exception]
try:  # libsodium verifies about 1.8x faster than OpenSSL here; both pass the same vectors.
    from nacl.bindings import crypto_sign_open as _sodium_open
    from nacl.exceptions import BadSignatureError as _SodiumBad
except ImportError:  # pragma: no cover - the fast path is optional
    _sodium_open = None
    _SodiumBad = InvalidSignature

BACKENDS = ("sodium", "openssl") if _sodium_open is not None else ("openssl",)
TAG_SIGN1 = 18
ALG_EDDSA = -8
HDR_ALG = 1
HDR_KID = 4


class Signer(Protocol):
    """Anything that signs bytes with an Ed25519 key: a key file, an HSM, a test key."""

    @property
    def public_key(self) -> bytes: ...

    def sign(self, data: bytes) -> bytes: ...


class Ed25519Signer:
    """A Signer holding an Ed25519 private key in memory."""

    __slots__ = ("_key", "_public")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self._public = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @classmethod
    def generate(cls) -> Ed25519Signer:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Ed25519Signer:
        if len(seed) != 32:
            raise ValueError(f"Ed25519 seed: expected 32 bytes, got {len(seed)}")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    def seed(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )

    @property
    def public_key(self) -> bytes:
        return self._public

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def __repr__(self) -> str:  # never show the private key
        return f"Ed25519Signer(public_key={self._public.hex()[:16]}...)"


_KEY_CACHE: dict[bytes, Ed25519PublicKey] = {}


def _public_key(raw: bytes) -> Ed25519PublicKey:
    key = _KEY_CACHE.get(raw)
    if key is None:
        if len(raw) != 32:
            raise MalformedRecord(f"Ed25519 public key: expected 32 bytes, got {len(raw)}")
        try:
            key = Ed25519PublicKey.from_public_bytes(raw)
        except ValueError as exc:
            raise MalformedRecord(f"Ed25519 public key is not valid: {exc}") from None
        if len(_KEY_CACHE) > 65536:
            _KEY_CACHE.clear()
        _KEY_CACHE[raw] = key
    return key


def sig_structure(protected: bytes, payload: bytes, external_aad: bytes) -> bytes:
    """The bytes an Ed25519 signature covers (RFC 9052 §4.4)."""
    return cbor2.dumps(["Signature1", protected, external_aad, payload])


def verify_signature(public_key: bytes, signature: bytes, signed: bytes, *, where: str | None = None,
                     backend: str | None = None) -> None:
    """Raise BadSignature unless `signature` is `public_key`'s Ed25519 signature over `signed`."""
    backend = backend or BACKENDS[0]
    try:
        if backend == "sodium" and _sodium_open is not None:
            if len(public_key) != 32 or len(signature) != 64:
                raise MalformedRecord(f"Ed25519: expected a 32-byte key and 64-byte signature, got "
                                      f"{len(public_key)} and {len(signature)}")
            _sodium_open(signature + signed, public_key)
        else:
            _public_key(public_key).verify(signature, signed)
    except (InvalidSignature, _SodiumBad, ValueError):
        raise _bad_signature(public_key, where) from None


def verify_signed_message(public_key: bytes, message: bytes) -> None:
    """Raise BadSignature unless `message` is `public_key`'s 64-byte Ed25519 signature followed by the bytes it
    signs (libsodium's signed-message form): `verify_signature` for a caller that holds both in one buffer, as
    a record's signature checked ahead does (ledger.record.signed_message), with no copy to join them."""
    if _sodium_open is None or len(public_key) != 32 or len(message) < 64:
        verify_signature(public_key, message[:64], message[64:])
        return
    try:
        _sodium_open(message, public_key)
    except (_SodiumBad, ValueError):
        raise _bad_signature(public_key, None) from None


def _bad_signature(public_key: bytes, where: str | None) -> BadSignature:
    return BadSignature(f"Ed25519 signature does not verify with key {public_key.hex()[:16]}...", where=where)


@dataclass(frozen=True, slots=True, kw_only=True)
class Sign1:
    """A parsed COSE_Sign1. `protected` keeps the exact signed bytes of the protected header."""

    protected: bytes
    headers: dict[int, Any]
    unprotected: dict[int, Any]
    payload: bytes | None
    signature: bytes

    @property
    def kid(self) -> bytes | None:
        kid = self.headers.get(HDR_KID, self.unprotected.get(HDR_KID))
        return kid if isinstance(kid, bytes) else None

    def signed_bytes(self, external_aad: bytes, payload: bytes | None = None) -> bytes:
        body = self.payload if payload is None else payload
        if body is None:
            raise MalformedRecord("COSE_Sign1 has a detached payload and none was supplied")
        return sig_structure(self.protected, body, external_aad)

    def verify(self, public_key: bytes, external_aad: bytes, *, payload: bytes | None = None,
               where: str | None = None) -> None:
        verify_signature(public_key, self.signature, self.signed_bytes(external_aad, payload), where=where)


def sign1(signer: Signer, *, headers: dict[int, Any], unprotected: dict[int, Any], payload: bytes,
          external_aad: bytes, detached: bool = False) -> bytes:
    """Sign `payload` and return the tagged COSE_Sign1 in deterministic CBOR."""
    protected = cbor.encode(headers)
    signature = signer.sign(sig_structure(protected, payload, external_aad))
    return cbor.encode([protected, unprotected, None if detached else payload, signature], tag=TAG_SIGN1)


def parse_sign1(data: bytes, *, what: str = "COSE_Sign1") -> Sign1:
    """Parse a tagged COSE_Sign1 strictly; the signature is not checked here."""
    item = cbor.decode(data, what=what, tag=TAG_SIGN1)
    if not isinstance(item, cbor2.CBORTag):
        raise MalformedRecord(f"{what}: expected CBOR tag {TAG_SIGN1} (COSE_Sign1), got an untagged item")
    body = item.value
    if not isinstance(body, list) or len(body) != 4:
        raise MalformedRecord(f"{what}: expected an array of 4 items, got {_describe(body)}")
    protected, unprotected, payload, signature = body
    if not isinstance(protected, bytes):
        raise MalformedRecord(f"{what}: protected header must be a byte string, got {_describe(protected)}")
    headers = cbor.decode(protected, what=f"{what} protected header") if protected else {}
    if not isinstance(headers, dict):
        raise MalformedRecord(f"{what}: protected header must encode a map, got {_describe(headers)}")
    if headers.get(HDR_ALG) != ALG_EDDSA:
        raise MalformedRecord(
            f"{what}: expected alg EdDSA ({ALG_EDDSA}) in the protected header, got {headers.get(HDR_ALG)!r}"
        )
    if not isinstance(unprotected, dict):
        raise MalformedRecord(f"{what}: unprotected header must be a map, got {_describe(unprotected)}")
    if payload is not None and not isinstance(payload, bytes):
        raise MalformedRecord(f"{what}: payload must be a byte string or nil, got {_describe(payload)}")
    if not isinstance(signature, bytes) or len(signature) != 64:
        raise MalformedRecord(f"{what}: signature must be 64 bytes of Ed25519, got {_describe(signature)}")
    return Sign1(protected=protected, headers=headers, unprotected=unprotected, payload=payload,
                 signature=signature)


def _describe(value: object) -> str:
    if isinstance(value, bytes):
        return f"{len(value)} bytes"
    if isinstance(value, list):
        return f"an array of {len(value)} items"
    return type(value).__name__
