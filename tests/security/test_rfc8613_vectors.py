"""aiocoap's OSCORE against RFC 8613 Appendix C, byte for byte (key derivation C.1-C.3, requests C.4-C.5,
response C.7), and the context this project derives goes through the same code."""

from __future__ import annotations

import aiocoap
from aiocoap import oscore
from aiocoap.message import Direction

from coap_server.security import derive_pair, peering_transcript

h = bytes.fromhex
SECRET = h("0102030405060708090a0b0c0d0e0f10")
SALT = h("9e7ca92223786340")
ID_CTX = h("37cbf3210017a2d3")


class Context(oscore.CanProtect, oscore.CanUnprotect, oscore.SecurityContextUtils):
    """An in-memory context: what aiocoap's FilesystemSecurityContext is, minus the files."""

    def __init__(self, sender_id: bytes, recipient_id: bytes, salt: bytes, id_context: bytes | None = None):
        self.alg_aead = oscore.algorithms[oscore.DEFAULT_ALGORITHM]
        self.hashfun = oscore.hashfunctions[oscore.DEFAULT_HASHFUNCTION]
        self.sender_id, self.recipient_id, self.id_context = sender_id, recipient_id, id_context
        self.derive_keys(salt, SECRET)
        self.sender_sequence_number = 0
        self.recipient_replay_window = oscore.ReplayWindow(32, lambda: None)
        self.recipient_replay_window.initialize_empty()
        self.echo_recovery = b"\x00" * 8

    def post_seqnoincrease(self) -> None:
        pass


def test_c1_key_derivation_client_and_server():
    client = Context(b"", b"\x01", SALT)
    assert client.sender_key == h("f0910ed7295e6ad4b54fc793154302ff")
    assert client.recipient_key == h("ffb14e093c94c9cac9471648b4f98710")
    assert client.common_iv == h("4622d4dd6d944168eefb54987c")
    assert client._construct_nonce(b"\0", client.sender_id, client.alg_aead) == h("4622d4dd6d944168eefb54987c")
    assert client._construct_nonce(b"\0", client.recipient_id, client.alg_aead) == h("4722d4dd6d944169eefb54987c")
    server = Context(b"\x01", b"", SALT)
    assert server.sender_key == h("ffb14e093c94c9cac9471648b4f98710")
    assert server.recipient_key == h("f0910ed7295e6ad4b54fc793154302ff")


def test_c2_c3_key_derivation():
    c2 = Context(b"\x00", b"\x01", b"")
    assert c2.sender_key == h("321b26943253c7ffb6003b0b64d74041")
    assert c2.recipient_key == h("e57b5635815177cd679ab4bcec9d7dda")
    assert c2.common_iv == h("be35ae297d2dace910c52e99f9")
    c3 = Context(b"", b"\x01", SALT, ID_CTX)
    assert c3.sender_key == h("af2a1300a5e95788b356336eeecd2b92")
    assert c3.recipient_key == h("e39a0c7c77b43f03b4b39ab9a268699f")
    assert c3.common_iv == h("2ca58fb85ff1b81c0b7181b85e")


def _protect(ctx: Context, plain_hex: str, seqno: int) -> tuple[bytes, object]:
    ctx.sender_sequence_number = seqno
    plain = _outgoing(plain_hex)
    outer, request_id = ctx.protect(plain)
    outer.mid, outer.token, outer.mtype = plain.mid, plain.token, plain.mtype
    return outer.encode(), request_id


def _outgoing(hexdata: str) -> aiocoap.Message:
    """A message from the vectors as one this end sends (decode() marks parsed messages as incoming)."""
    msg = aiocoap.Message.decode(h(hexdata))
    msg.direction = Direction.OUTGOING
    return msg


def test_c4_request_with_empty_sender_id():
    encoded, _ = _protect(Context(b"", b"\x01", SALT), "44015d1f00003974396c6f63616c686f737483747631", 20)
    assert encoded == h("44025d1f00003974396c6f63616c686f7374620914ff612f1092f1776f1c1668b3825e")


def test_c5_request_with_sender_id():
    encoded, _ = _protect(Context(b"\x00", b"\x01", b""), "440171c30000b932396c6f63616c686f737483747631", 20)
    assert encoded == h("440271c30000b932396c6f63616c686f737463091400ff4ed339a5a379b0b8bc731fffb0")


def test_c4_server_unprotects_and_c7_response_then_replay_refused():
    server = Context(b"\x01", b"", SALT)
    request = aiocoap.Message.decode(h("44025d1f00003974396c6f63616c686f7374620914ff612f1092f1776f1c1668b3825e"))
    plain, request_id = server.unprotect(request)
    assert plain.code == aiocoap.GET and plain.opt.uri_path == ("tv1",)
    response = _outgoing("64455d1f00003974ff48656c6c6f20576f726c6421")
    outer, _ = server.protect(response, request_id)
    outer.mid, outer.token, outer.mtype = response.mid, response.token, response.mtype
    assert outer.encode() == h("64445d1f0000397490ffdbaad1e9a7e7b2a813d3c31524378303cdafae119106")
    # The same request again is a replay: the window refuses it.
    again = aiocoap.Message.decode(h("44025d1f00003974396c6f63616c686f7374620914ff612f1092f1776f1c1668b3825e"))
    try:
        server.unprotect(again)
    except oscore.ReplayError:
        pass
    else:
        raise AssertionError("a replayed RFC 8613 C.4 request was accepted")


def test_derived_pair_contexts_agree_and_differ_per_pair():
    from ledger import Ed25519Signer

    a, b, c = (Ed25519Signer.from_seed(bytes([n]) * 32) for n in (1, 2, 3))
    ab = derive_pair(a.seed(), a.public_key, b.public_key, transcript=peering_transcript(a.public_key, b.public_key))
    ba = derive_pair(b.seed(), b.public_key, a.public_key, transcript=peering_transcript(a.public_key, b.public_key))
    assert (ab.secret, ab.salt) == (ba.secret, ba.salt)
    assert (ab.sender_id, ab.recipient_id) == (ba.recipient_id, ba.sender_id)
    ac = derive_pair(a.seed(), a.public_key, c.public_key, transcript=peering_transcript(a.public_key, c.public_key))
    assert ac.secret != ab.secret
    other = derive_pair(a.seed(), a.public_key, b.public_key, transcript=b"another enrollment")
    assert other.secret != ab.secret
    assert "secret" not in repr(ab).split("(", 1)[1].split("sender_id")[0]  # secrets stay out of repr
