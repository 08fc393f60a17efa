"""Write the README's dashboard screenshots to docs/screenshots/: `.venv/bin/python -m tests.dashboard.screenshots`."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from .harness import ROOT, DemoProcess, browser

PAGES = (("chain", "[data-testid=devices]"), ("mbg", "[data-testid=stock]"), ("markets", "[data-testid=map]"))


def main(out: Path = ROOT / "docs" / "screenshots") -> int:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        demo = DemoProcess(Path(tmp) / "var")
        try:
            demo.wait_day_done()
            for width, height, suffix in ((1400, 1000, ""), (390, 844, "-phone")):
                driver, close = browser(width, height)
                try:
                    for lang in ("en", "id"):
                        for route, ready in PAGES:
                            driver.get(f"{demo.url}/#/{route}")
                            driver.execute_script(f"localStorage.setItem('jejak.lang', '{lang}')")
                            driver.refresh()
                            WebDriverWait(driver, 15).until(lambda d, r=ready: d.find_elements(By.CSS_SELECTOR, r))
                            time.sleep(0.5)
                            if lang == "en" or route == "mbg":
                                name = f"{route}{'' if lang == 'en' else '-id'}{suffix}.png"
                                driver.save_screenshot(str(out / name))
                                print(out / name)
                finally:
                    close()
        finally:
            demo.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
