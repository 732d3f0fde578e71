"""The MLflow UI as a person first sees it: ``python -m cli.ui`` prints an address, and a real
headless Chromium (Debian's, driven by Selenium through its chromedriver; no browser download),
with an empty profile, lands there on the runs table with the runs' accuracies as columns.

The screenshot is kept in ``.tmp/screenshots/mlflow_runs.png`` (CI keeps it). Without Chromium the
test is skipped, unless ``EQSPIKE_REQUIRE_BROWSER=1`` (CI) makes that a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import mlflow
import pytest

from tests.conftest import REPO

CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver") or \
    "/usr/bin/chromedriver"
SCREENSHOT = REPO / ".tmp" / "screenshots" / "mlflow_runs.png"


def browser_or_skip():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    if missing:
        if os.environ.get("EQSPIKE_REQUIRE_BROWSER"):
            pytest.fail(f"EQSPIKE_REQUIRE_BROWSER is set but {missing} missing (apt-get install chromium chromium-driver)")
        pytest.skip(f"no browser: {missing} missing (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}", "--window-size=1920,1080"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def trained_store(tmp_path, mnist_like_dir, mlflow_store):
    """A store holding a real training run (rate EP, 1 epoch, tiny data) and its accuracy."""
    from stages.train_ep import main

    _, data = mnist_like_dir
    assert main([*data, "ep.sizes=[784,16,10]", "ep.epochs=1", "ep.T=6", "ep.K=3", "ep.batch_size=10",
                 "ep.eval_batch_size=50", f"ep.out.models={tmp_path / 'm'}", f"ep.out.checkpoints={tmp_path / 'c'}",
                 f"ep.out.runs={tmp_path / 'r'}"]) == 0
    (run,) = mlflow.search_runs(experiment_names=["eqspike"], output_format="list")
    return mlflow_store, run


def test_the_printed_address_opens_on_the_runs_with_their_accuracies(trained_store, tmp_path):
    uri, run = trained_store
    driver = browser_or_skip()
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true"}
    ui = subprocess.Popen([sys.executable, "-m", "cli.ui", "--port", str(port)], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = [ui.stdout.readline(), ui.stdout.readline()]
        (url,) = re.findall(r"open: (\S+)", "".join(first))
        assert url.startswith(f"http://127.0.0.1:{port}/#/experiments/") and "/runs?viewStateShareKey=" in url
        deadline = time.monotonic() + 180  # the server starts in 10-40 s
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or ui.poll() is not None:
                    raise AssertionError(f"the MLflow UI did not start: {ui.stdout.read()[-2000:]}") from None
                time.sleep(1)
        driver.get(url)
        accuracy = run.data.metrics["test_accuracy"]
        shown = f"{accuracy:.4f}".rstrip("0").rstrip(".")
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline:
            text = driver.find_element("tag name", "body").text
            if run.info.run_name in text and "test_accuracy" in text and shown in text:
                break
            time.sleep(1)
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SCREENSHOT))
        assert "/runs" in driver.current_url, driver.current_url
        assert run.info.run_name in text, f"run {run.info.run_name!r} not on the first page: {text[:1500]}"
        # the saved view's columns that this run has (no validation split, no weight average here)
        for column in ("test_accuracy", "seconds_per_epoch", "stage", "seed"):
            assert column in text, f"column {column} not shown: {text[:1500]}"
        assert shown in text, f"the run's accuracy {shown} is not shown: {text[:1500]}"
    finally:
        driver.quit()
        ui.terminate()
        try:
            ui.wait(timeout=20)
        except subprocess.TimeoutExpired:
            ui.kill()
