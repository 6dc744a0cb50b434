"""Screenshots of the two browser pages, for the README: a run's report.html, and the label app at laptop and
phone width on a few pairs of demo-model images (headless Debian Chromium, as the tests use).

    python docs/results/browser/screenshots.py RUN_DIR LABEL_SOURCE_DIR [OUT_DIR]

RUN_DIR: a finished run (its report.html). LABEL_SOURCE_DIR: a label folder with demo images (e.g. the
``labels/`` of a ``lasro bench human`` run); its first pairs are copied, unvoted, into a fresh folder.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from lasro.labeling.votes import Pair, VoteStore


def driver(width: int, height: int, phone: bool = False):
    options = webdriver.ChromeOptions()
    if phone:  # a phone's viewport (a desktop window cannot be made this narrow)
        options.add_experimental_option("mobileEmulation", {"deviceMetrics": {"width": width, "height": height,
                                                                              "pixelRatio": 2}})
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--hide-scrollbars", f"--window-size={width},{height}"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def main(run_dir: str, label_source: str, out: str = "docs/results/browser") -> None:
    os.makedirs(out, exist_ok=True)
    d = driver(1280, 2200)
    try:
        d.get("file://" + os.path.abspath(os.path.join(run_dir, "report.html")))
        time.sleep(1)
        d.save_screenshot(os.path.join(out, "report.png"))
    finally:
        d.quit()

    folder = tempfile.mkdtemp(prefix="label-shot-")
    with VoteStore(label_source) as src, VoteStore(folder) as dst:
        pairs = src.pairs()[:3]
        for p in pairs:
            for name in (p.image_0, p.image_1):
                shutil.copyfile(os.path.join(src.images, name), os.path.join(dst.images, name))
        dst.add_pairs([Pair(p.pair_id, p.batch, p.prompt, p.image_0, p.image_1) for p in pairs])
        dst.vote(pairs[0].pair_id, "left")  # one vote cast: the progress reads 1 / 3
    port = 8797
    server = subprocess.Popen([sys.executable, "-m", "lasro.cli", "label", "serve", folder, "--port", str(port)])
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        for name, (w, h, phone) in {"label_laptop.png": (1280, 800, False), "label_phone.png": (390, 844, True)}.items():
            d = driver(w, h, phone)
            try:
                d.get(f"http://127.0.0.1:{port}/")
                time.sleep(1.5)
                d.save_screenshot(os.path.join(out, name))
            finally:
                d.quit()
    finally:
        server.kill()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
