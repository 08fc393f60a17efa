"""Jejak device firmware: hardware abstraction, tap state machine, sensor scheduler, watchdog, thin asyncio loop.

Everything in this package runs on CPython and on MicroPython (no dataclasses, typing or __future__);
hardware libraries are imported only inside the driver that needs them, when it is opened. May import its
own modules only: nothing of ledger, edge, coap_server, hub or tools (tests/test_layering.py checks it).
"""

__version__ = "0.1.0"
