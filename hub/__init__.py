"""The regional hub: ingest, checkpoints, proofs, stores, MBG and market analytics, bridges, HTTP, dashboard.

May import: ledger, coap_server, its own backends (LMDB, PostgreSQL, MQTT, numpy...) and the standard library;
never edge or tools (tests/test_layering.py checks it).

Where things go: `app.start_hub(config)` assembles every part from the `config.HubConfig` tree (the one place a
new part is wired in); `service.Hub` verifies, stores and checkpoints; `http.HubApi` serves the chain's API and
`auth.Auth` decides every route's role; `views.Views` holds the read models (`chain/view.py`, `mbg/view.py`,
`markets/view.py`, `alerts.py`) behind one lock, fed by the hub's record listener; each domain's dashboard
routes are in its `routes.py` (`chain/`, `mbg/`, `markets/`, `bridges/`); CoAP resources in `coap.py` and
`coap_server`.
"""
