"""The network layer edge and hub share: CoAP/CBOR resources and client, OSCORE contexts, mDNS discovery.

May import: ledger, aiocoap, cbor2, zeroconf and the standard library; never edge, hub or tools
(tests/test_layering.py checks it).
"""
