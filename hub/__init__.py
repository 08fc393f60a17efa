"""The regional hub: ingest, checkpoints, proofs, stores, MBG and market analytics, bridges, HTTP, dashboard.

May import: ledger, coap_server, its own backends (LMDB, PostgreSQL, MQTT, numpy...) and the standard library;
never edge or tools (tests/test_layering.py checks it).
"""
