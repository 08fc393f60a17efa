"""Command-line entry points: `jejak` (edge, hub, demo, keys, enroll, export, sim, bench) and `jejak-verify`.

May import every other package; nothing else imports tools (tests/test_layering.py checks it).
"""
