"""A dishonest node for the LAN tests: copies a real edge's log, then offers a forged or forked version of it."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import aiocoap
import aiocoap.resource as resource

from coap_server.discovery import Discovery
from coap_server.sync import add_sync_resources, encode_heads
from ledger import ChainBuilder, ChainState, Ed25519Signer, decode_record, link
from ledger.sync import Head, decode_records


class Holder:
    def __init__(self, raws: list[bytes]) -> None:
        self.raws = raws
        self.device = decode_record(raws[0]).device_id

    def heads(self) -> list[Head]:
        last = decode_record(self.raws[-1])
        return [Head(device_id=self.device, length=len(self.raws), head=last.id)]

    def log_range(self, device_id: bytes, start: int, end: int) -> list[bytes]:
        return self.raws[start:end] if device_id == self.device else []

    def receive(self, device_id: bytes, raws: list[bytes]) -> dict:
        return {"accepted": 0, "duplicates": 0, "length": 0, "problem": None}


def other_history(raws: list[bytes], cut: int, signer: Ed25519Signer, count: int) -> list[bytes]:
    """`raws[:cut]`, then `count` records that link to it, signed by `signer`."""
    state = ChainState.empty(decode_record(raws[0]).device_id)
    for raw in raws[:cut]:
        state, _ = link(state, decode_record(raw))
    builder = ChainBuilder(signer, clock=lambda: 1, boot=state.boot, state=state.__class__(
        device_id=state.device_id, length=state.length, head=state.head, key=signer.public_key, boot=state.boot,
        time=state.time))
    return raws[:cut] + [builder.append("note", {"text": f"other history {i}"}).raw for i in range(count)]


async def copy_log(ctx: aiocoap.Context, victim: str) -> list[bytes]:
    msg = aiocoap.Message(code=aiocoap.POST, uri=f"{victim}/sync/heads", payload=encode_heads([]))
    from ledger.sync import decode_heads

    heads = decode_heads((await ctx.request(msg).response).payload)
    own = max(heads, key=lambda h: h.length)
    raws: list[bytes] = []
    while len(raws) < own.length:
        uri = f"{victim}/sync/records?d={own.device_id.hex()}&from={len(raws)}&to={own.length}"
        _, _, got = decode_records((await ctx.request(aiocoap.Message(code=aiocoap.GET, uri=uri)).response).payload)
        raws += got
    return raws


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--victim", required=True, help="coap://ip:port of the edge whose log is copied")
    p.add_argument("--ip", required=True)
    p.add_argument("--mode", choices=("forge", "fork"), required=True)
    p.add_argument("--key", help="the victim's key file (fork mode: a device that equivocates)")
    args = p.parse_args()
    ctx = await aiocoap.Context.create_client_context()
    raws = await copy_log(ctx, args.victim)
    # Forge: a continuation of the log that links correctly but is signed by a key that is not the device's.
    # Fork: the device's own key signs a second history from the middle of the log on.
    cut = len(raws) if args.mode == "forge" else len(raws) // 2
    signer = Ed25519Signer.generate() if args.mode == "forge" else Ed25519Signer.from_seed(Path(args.key).read_bytes())
    raws = other_history(raws, cut, signer, len(raws) - cut + 200)
    holder = Holder(raws)
    site = resource.Site()
    add_sync_resources(site, holder)
    server = await aiocoap.Context.create_server_context(site, bind=(args.ip, 5683), transports=["udp6"])
    disc = Discovery(role="edge", device_id=(b"\xee" if args.mode == "forge" else b"\xef") * 16, port=5683, addresses=[args.ip], heads=holder.heads,
                     interfaces=[args.ip])
    await disc.start()
    print("serving", args.mode, len(raws), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
