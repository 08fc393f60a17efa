"""The attacker: a separate process on the same network (namespace) as the edge and hub.

    python -m tests.security.attacker fake-hub <claimed hub id hex> <port>   announce a hub over mDNS, log what arrives
    python -m tests.security.attacker replay <host> <port> <datagram hex>... send captured datagrams, print answers
    python -m tests.security.attacker enroll <hub http url> <victim pubkey hex> <hub id hex>  forge an enrollment
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import urllib.error
import urllib.request

import aiocoap


async def fake_hub(claimed: str, port: int) -> None:
    from coap_server.discovery import Discovery

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    sock.setblocking(False)
    disc = Discovery(role="hub", device_id=bytes.fromhex(claimed), port=port, addresses=["127.0.0.1"],
                     interfaces=["127.0.0.1"])
    await disc.start()
    print(json.dumps({"ready": True}), flush=True)
    loop = asyncio.get_running_loop()
    try:
        while True:
            data, addr = await loop.sock_recvfrom(sock, 65536)
            msg = aiocoap.Message.decode(data)
            # What a fake hub can see: the outer message only (OSCORE hides path and payload).
            print(json.dumps({"got": len(data), "outer_code": str(msg.code), "oscore": msg.opt.oscore is not None,
                              "uri_path": list(msg.opt.uri_path), "payload": len(msg.payload)}), flush=True)
            # It answers with a plain ACK/2.04 as a hub would; the edge must not believe it.
            reply = aiocoap.Message(mtype=aiocoap.ACK, mid=msg.mid, token=msg.token, code=aiocoap.CHANGED,
                                    payload=b"\xa0")
            sock.sendto(reply.encode(), addr)
    finally:
        await disc.close()


def replay(host: str, port: int, datagrams: list[str]) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(5)
    for hexdata in datagrams:
        sock.sendto(bytes.fromhex(hexdata), (host, port))
        try:
            data, _ = sock.recvfrom(65536)
            msg = aiocoap.Message.decode(data)
            print(json.dumps({"code": str(msg.code), "oscore": msg.opt.oscore is not None,
                              "payload": msg.payload.decode(errors="replace")[:80]}), flush=True)
        except TimeoutError:
            print(json.dumps({"code": "timeout"}), flush=True)


def enroll(url: str, victim: str, hub_id: str) -> None:
    from ledger import Ed25519Signer
    from ledger.cose import parse_sign1
    from ledger.enroll import make_enroll_request

    mine = Ed25519Signer.generate()
    real = make_enroll_request(mine, site="x", role="kitchen_exit", name="x", time=0, hub_id=bytes.fromhex(hub_id))
    # Swap the victim's public key into the payload; the signature is still the attacker's.
    from ledger import cbor as lcbor
    from ledger.cose import ALG_EDDSA, HDR_ALG, HDR_KID, sign1

    payload = lcbor.encode([bytes.fromhex(victim), "x", "kitchen_exit", "x", 0, bytes.fromhex(hub_id)])
    forged = sign1(mine, headers={HDR_ALG: ALG_EDDSA}, unprotected={HDR_KID: b"\x00" * 16}, payload=payload,
                   external_aad=b"jejak/enroll/v1")
    assert parse_sign1(real, what="x")
    for name, body in (("forged", forged),):
        req = urllib.request.Request(f"{url}/api/enroll/grant", data=body, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                print(json.dumps({"attempt": name, "status": resp.status}), flush=True)
        except urllib.error.HTTPError as exc:
            print(json.dumps({"attempt": name, "status": exc.code, "body": json.loads(exc.read())}), flush=True)


def main(argv: list[str]) -> None:
    if argv[0] == "fake-hub":
        asyncio.run(fake_hub(argv[1], int(argv[2])))
    elif argv[0] == "replay":
        replay(argv[1], int(argv[2]), argv[3:])
    elif argv[0] == "enroll":
        enroll(argv[1], argv[2], argv[3])


if __name__ == "__main__":
    main(sys.argv[1:])
