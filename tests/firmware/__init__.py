"""Tests of the device firmware (CPython); tests/micropython runs the shared cases under MicroPython."""
