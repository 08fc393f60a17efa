"""Importing firmware, and using the simulator, loads no hardware library."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HARDWARE = ("nfc", "board", "busio", "digitalio", "microcontroller", "pulseio", "adafruit_", "usb", "usb1",
            "serial", "ndef", "RPi", "gpiod")

PROGRAM = """
import json, sys
import firmware, firmware.hal, firmware.actions, firmware.tap, firmware.schedule, firmware.sim
import firmware.runtime, firmware.bench, firmware.drivers
import firmware.drivers.nfcpy_reader, firmware.drivers.blinka
from firmware import drivers, runtime

reader = drivers.open_reader("sim")
sensor = drivers.open_sensor("sim", "room", seed=3)
indicator = drivers.open_indicator("sim")
runtime.start(runtime.main(seed=2, sessions=1, tags=(2, 3)))
print(json.dumps(sorted(sys.modules)))
"""


def _modules(program):
    done = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_firmware_and_simulator_load_no_hardware_library():
    loaded = _modules(PROGRAM)
    offending = [m for m in loaded if m.startswith(HARDWARE)]
    assert offending == []
    assert "firmware.drivers.nfcpy_reader" in loaded and "firmware.sim" in loaded


def test_the_check_sees_a_hardware_import():
    """The test above would notice: opening the nfcpy driver does load nfc."""
    loaded = _modules("import json, sys\n"
                      "from firmware.drivers.nfcpy_reader import NfcpyReader\n"
                      "r = NfcpyReader('udp:127.0.0.1:9')\n"
                      "try:\n    r.open()\nexcept Exception:\n    pass\n"
                      "print(json.dumps(sorted(sys.modules)))\n")
    assert "nfc" in loaded
