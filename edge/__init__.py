"""The Raspberry Pi daemon: LMDB log store, device keys, configuration, readers, sensors, peer sync, uplink.

May import: ledger, firmware, coap_server, lmdb and the standard library; never hub or tools, so an edge
installs and runs without the hub (tests/test_layering.py checks it).
"""
