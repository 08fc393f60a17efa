"""Cases about MicroPython itself: the whole firmware package imports, hardware drivers fail cleanly."""

import sys

IS_MICROPYTHON = sys.implementation.name == "micropython"


def check_every_firmware_module_imports():
    import firmware
    import firmware.actions
    import firmware.bench
    import firmware.drivers
    import firmware.drivers.blinka
    import firmware.drivers.nfcpy_reader
    import firmware.hal
    import firmware.runtime
    import firmware.schedule
    import firmware.sim
    import firmware.tap

    assert firmware.__version__
    if not IS_MICROPYTHON:
        return  # other CPython tests load these on purpose; tests/firmware/test_lazy_imports checks cleanly
    for name in ("nfc", "board", "busio", "digitalio", "adafruit_pn532", "adafruit_bme280", "adafruit_dht"):
        assert name not in sys.modules, name


def check_hardware_drivers_fail_cleanly_without_their_libraries():
    if not IS_MICROPYTHON:
        return  # on CPython the libraries may be installed; tests/firmware covers the drivers there
    from firmware import drivers, hal

    for kind, options in (("nfcpy", {}), ("pn532_i2c", {})):
        try:
            drivers.open_reader(kind, **options)
        except hal.DriverError as error:
            assert "not installed" in str(error), error
        else:
            raise AssertionError(f"{kind} opened without its library")
    for kind in ("bme280", "dht22"):
        try:
            drivers.open_sensor(kind, "room")
        except hal.DriverError:
            pass
        else:
            raise AssertionError(f"{kind} opened without its library")
    reader = drivers.open_reader("auto")  # falls back to the simulator
    assert type(reader).__name__ == "SimNfcReader"


def check_bench_runs():
    from firmware import bench

    results = bench.run(quick=True)
    assert [r["name"] for r in results] == ["tap_per_tag", "tap_batch_64"]
    assert all(r["events_per_s"] > 0 for r in results)
