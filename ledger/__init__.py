"""Jejak's root of trust: records, chains, Merkle proofs, checkpoints and bundles, as pure functions over bytes.

Also every signed message edge and hub exchange (enrollment request, grant, revocation list) and the one
chain-acceptance path both call. May import: the standard library, cbor2 and cryptography (pynacl when
present); no files, sockets, clocks, threads, asyncio or storage, and nothing of firmware, edge, coap_server,
hub or tools (tests/test_layering.py checks it; ledger.bench, the benchmark driver, alone reads the clock).
"""

from .acceptance import Accepted, HeldLog, accept
from .bodies import KINDS, validate_body
from .bundle import (
    Bundle,
    BundleEncoder,
    BundleReport,
    BundleWriter,
    LogExport,
    compare_bundles,
    decode_bundle,
    verify_bundle,
)
from .chain import (
    ChainBuilder,
    ChainState,
    ForkEvidence,
    check_signatures,
    link,
    verify_chain,
    verify_records,
)
from .checkpoint import (
    Checkpoint,
    VerifiedReceipt,
    decode_checkpoint,
    make_receipt,
    sign_checkpoint,
    verify_checkpoints_consistent,
    verify_receipt,
)
from .cose import Ed25519Signer, Signer
from .errors import (
    BadCheckpoint,
    BadProof,
    BadSignature,
    BrokenChain,
    ForkDetected,
    LedgerError,
    LimitExceeded,
    MalformedRecord,
    RevokedKey,
    SyncError,
    UnknownKey,
    VerificationError,
)
from .merkle import MerkleTree, leaf_hash, verify_consistency, verify_inclusion
from .record import MAX_RECORD_BYTES, Record, decode_record, device_id_for, encode_record

__all__ = [
    "KINDS", "MAX_RECORD_BYTES", "Accepted", "BadCheckpoint", "BadProof", "BadSignature", "BrokenChain", "Bundle",
    "BundleEncoder", "BundleReport", "BundleWriter", "ChainBuilder", "ChainState", "Checkpoint", "Ed25519Signer", "ForkDetected", "ForkEvidence",
    "HeldLog", "LedgerError", "LimitExceeded", "LogExport", "MalformedRecord", "MerkleTree", "Record", "RevokedKey",
    "Signer", "SyncError", "UnknownKey", "VerificationError", "VerifiedReceipt", "accept", "check_signatures",
    "compare_bundles", "decode_bundle", "decode_checkpoint", "decode_record", "device_id_for", "encode_record",
    "leaf_hash", "link", "make_receipt", "sign_checkpoint", "validate_body", "verify_bundle", "verify_chain",
    "verify_checkpoints_consistent", "verify_consistency", "verify_inclusion", "verify_receipt",
    "verify_records",
]
