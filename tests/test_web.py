"""`composer serve`: the HTTP API against a real server process, and the page in a real headless browser.

The API tests need the web extra (starlette, uvicorn); the browser tests also need selenium and Debian's
chromium and chromium-driver, and are skipped cleanly where any is missing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium") or "") if p and Path(p).exists()), None)
CHROMEDRIVER = next((p for p in ("/usr/bin/chromedriver", shutil.which("chromedriver") or "")
                     if p and Path(p).exists()), None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(home: Path) -> dict:
    env = dict(os.environ, COMPOSER_HOME=str(home), COMPOSER_LOAD_PLUGINS="", OMP_NUM_THREADS="1")
    env.pop("COMPOSER_SOUNDFONT", None)
    return env


class Server:
    """``python -m composer serve --port P`` in a subprocess, with helpers to call its API."""

    def __init__(self, home: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.process = subprocess.Popen([sys.executable, "-m", "composer", "serve", "--port", str(self.port)],
                                        env=server_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
        deadline = time.time() + 90
        while True:
            try:
                self.get("api/styles")
                return
            except (urllib.error.URLError, ConnectionError):
                if self.process.poll() is not None or time.time() > deadline:
                    self.stop()
                    raise RuntimeError(f"composer serve did not start: {self.process.stderr.read()}") from None
                time.sleep(0.2)

    def request(self, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        req = urllib.request.Request(self.url + path, data=body, method="POST" if body is not None else "GET",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def get(self, path: str) -> dict:
        status, body = self.request(path)
        assert status == 200, body
        return json.loads(body)

    def post(self, data: object) -> tuple[int, dict]:
        status, body = self.request("api/jobs", json.dumps(data).encode())
        return status, json.loads(body)

    def finished(self, job_id: str, timeout: float = 60) -> dict:
        deadline = time.time() + timeout
        while True:
            job = self.get(f"api/jobs/{job_id}")
            if job["state"] in ("done", "failed") or time.time() > deadline:
                return job
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = Server(tmp_path_factory.mktemp("serve-home"))
    yield running
    running.stop()
    errors = running.process.stderr.read()
    # uvicorn shuts down cleanly on SIGTERM, then exits by the signal it caught
    assert running.process.returncode in (0, -signal.SIGTERM) and "Traceback" not in errors, errors


def is_wav_with_sound(data: bytes) -> bool:
    import numpy as np

    samples = np.frombuffer(data[44:], dtype="<i2")
    return data[:4] == b"RIFF" and data[8:12] == b"WAVE" and len(samples) > 1000 and int(np.abs(samples).max()) > 1000


# ---------------------------------------------------------------------------------- the HTTP API


def test_the_api_generates_a_chorale_and_serves_its_files(server):
    styles = {s["name"]: s for s in server.get("api/styles")["styles"]}
    assert {"bach", "base", "irish", "hershey"} <= set(styles) and styles["bach"]["description"]
    status, job = server.post({"style": "bach", "length": 2, "seed": 1})
    assert status == 202 and job["state"] in ("queued", "running")
    job = server.finished(job["id"])
    assert job["state"] == "done", job
    (piece,) = job["pieces"]
    assert piece["notes"]["notes"]
    files = {f["format"]: f["url"] for f in piece["files"]}
    assert server.request("api/" + files["mid"])[1][:4] == b"MThd"
    status, audio = server.request("api/" + piece["audio"])
    assert status == 200 and is_wav_with_sound(audio)


def test_the_page_loads_nothing_from_elsewhere(server):
    for path in ("", "static/app.js", "static/app.css"):
        status, body = server.request(path)
        assert status == 200
        assert b"http://" not in body and b"https://" not in body and b"//cdn" not in body, path


@pytest.mark.parametrize(("body", "message"), [
    (b"{not json", "the request is not valid JSON"),
    (json.dumps({"style": "nosuch"}).encode(), "unknown style 'nosuch'"),
    (json.dumps({"style": "bach", "length": 400}).encode(), "this page makes at most 20,000"),
    (json.dumps({"style": "bach", "primer": {"name": "a.txt", "data": "aGk="}}).encode(), "'a.txt' holds text"),
])
def test_bad_input_is_a_one_line_json_error_and_the_server_goes_on(server, body, message):
    status, reply = server.request("api/jobs", body)
    assert status == 400 and message in json.loads(reply)["error"]
    assert "\n" not in json.loads(reply)["error"]
    assert server.request("api/jobs/nosuch")[0] == 404
    assert server.get("api/samplers")["samplers"] and server.process.poll() is None


def test_two_requests_at_once_queue_and_both_complete(server):
    replies = []
    posts = [threading.Thread(target=lambda s=s: replies.append(server.post({"style": "bach", "length": 4, "seed": s,
                                                                              "n": 4})))
             for s in (1, 2)]
    for post in posts:
        post.start()
    for post in posts:
        post.join()
    assert [status for status, _ in replies] == [202, 202]
    assert sorted(job["ahead"] for _, job in replies) == [0, 1]  # the second waits behind the first
    for _, job in replies:
        assert server.finished(job["id"])["state"] == "done"


def test_a_taken_port_is_one_line_and_no_traceback(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "composer", "serve", "--port", str(port)], capture_output=True,
                                text=True, env=server_env(tmp_path), timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip() == f"Error: cannot listen on 127.0.0.1:{port}: the port is in use (choose another " \
                                    "with --port)"


def test_without_the_web_extra_serve_says_what_to_install(tmp_path):
    code = ("import sys; sys.modules['uvicorn'] = None; sys.argv = ['composer', 'serve']; "
            "from composer.cli import main; main()")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=server_env(tmp_path),
                            timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "pip install 'lstm-composer[web]'" in result.stderr and len(result.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------ the browser


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs chromium and chromedriver (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1200",
                "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def page(server, browser):
    """The page, loaded afresh, its styles listed."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server.url)
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#style option[value=bach]"))
    return browser


def fill(driver, **fields) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    for name, value in fields.items():
        field = driver.find_element(By.ID, name)
        if field.tag_name == "select":
            Select(field).select_by_value(value)
        else:
            field.clear()
            field.send_keys(str(value))


def generate(driver, count: int = 1, timeout: float = 60) -> list:
    """Press Generate and wait until the newest ``count`` jobs have finished; their cards, newest first."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    before = len(driver.find_elements(By.CSS_SELECTOR, ".job"))
    driver.find_element(By.ID, "generate").click()
    WebDriverWait(driver, 10).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".job")) > before
                                    or d.find_element(By.ID, "error").is_displayed())
    cards = driver.find_elements(By.CSS_SELECTOR, ".job")[:count]
    WebDriverWait(driver, timeout).until(lambda d: all(c.get_attribute("data-state") in ("done", "failed")
                                                       for c in cards))
    return cards


def error_shown(driver) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "error").is_displayed())
    return driver.find_element(By.ID, "error").text


COLOURED_PIXELS = """
const canvas = arguments[0];
const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
let coloured = 0;
for (let i = 0; i < data.length; i += 4) {
  const [r, g, b] = [data[i], data[i + 1], data[i + 2]];
  if (Math.max(r, g, b) - Math.min(r, g, b) > 60) coloured++;  // a note's colour, not the grey background
}
return coloured;
"""

FETCH_BYTES = """
const [url, done] = [arguments[0], arguments[arguments.length - 1]];
fetch(url).then((r) => r.arrayBuffer()).then((b) => done(Array.from(new Uint8Array(b)))).catch((e) => done(String(e)));
"""

AUDIO_READY = """
const [audio, done] = [arguments[0], arguments[arguments.length - 1]];
const report = () => done({duration: audio.duration, error: audio.error && audio.error.code});
if (audio.readyState >= 1) report();
else { audio.addEventListener("loadedmetadata", report); audio.addEventListener("error", report); audio.load(); }
"""


def test_the_page_generates_a_chorale_draws_it_plays_it_and_offers_the_midi(page):
    from selenium.webdriver.common.by import By

    fill(page, style="bach", length=2, seed=1)
    (card,) = generate(page)
    assert card.get_attribute("data-state") == "done", card.text
    assert "done in" in card.find_element(By.CSS_SELECTOR, ".status").text
    canvas = card.find_element(By.CSS_SELECTOR, "canvas.roll")
    assert page.execute_script(COLOURED_PIXELS, canvas) > 200
    audio = card.find_element(By.TAG_NAME, "audio")
    wav = bytes(page.execute_async_script(FETCH_BYTES, audio.get_attribute("src")))
    assert is_wav_with_sound(wav)
    ready = page.execute_async_script(AUDIO_READY, audio)
    assert ready["error"] is None and ready["duration"] > 1
    midi = card.find_element(By.CSS_SELECTOR, "a[data-format=mid]")
    assert midi.get_attribute("download").endswith(".mid")
    assert bytes(page.execute_async_script(FETCH_BYTES, midi.get_attribute("href")))[:4] == b"MThd"


def test_the_page_looks_inside_the_model_for_a_generated_chorale(page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    fill(page, style="bach", length=1, seed=2)
    (card,) = generate(page)
    card.find_element(By.CSS_SELECTOR, "button.inside").click()
    view = WebDriverWait(page, 60).until(lambda d: card.find_elements(By.CSS_SELECTOR, ".inside-view img"))[0]
    WebDriverWait(page, 20).until(lambda d: d.execute_script("return arguments[0].naturalWidth", view) > 0)
    cells = card.find_element(By.CSS_SELECTOR, ".inside-view .cells").text
    assert "position in bar" in cells and "r = " in cells


def test_the_page_shows_bad_input_and_the_server_keeps_working(page, tmp_path):
    from selenium.webdriver.common.by import By

    fill(page, style="bach", length=400)
    page.find_element(By.ID, "generate").click()
    assert "this page makes at most 20,000 (length is in bars)" in error_shown(page)

    not_midi = tmp_path / "shopping.txt"
    not_midi.write_text("eggs, milk\n")
    fill(page, length=2)
    page.find_element(By.ID, "primer").send_keys(str(not_midi))
    page.find_element(By.ID, "generate").click()
    assert "shopping.txt" in error_shown(page)
    page.execute_script("document.getElementById('primer').value = ''")

    page.execute_script("const s = document.getElementById('style');"
                        "s.append(new Option('gone', 'gone')); s.value = 'gone';")
    page.find_element(By.ID, "generate").click()
    assert "unknown style 'gone'" in error_shown(page)

    fill(page, style="bach", length=1)
    (card,) = generate(page)
    assert card.get_attribute("data-state") == "done" and not page.find_element(By.ID, "error").is_displayed()


def test_two_generations_from_the_page_queue_and_both_finish(page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    fill(page, style="bach", length=4, n=4)
    page.find_element(By.ID, "generate").click()
    WebDriverWait(page, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".job"))
    cards = generate(page, count=2)
    assert [c.get_attribute("data-state") for c in cards] == ["done", "done"]
    for card in cards:
        rolls = card.find_elements(By.CSS_SELECTOR, "canvas.roll")
        assert len(rolls) == 4 and all(page.execute_script(COLOURED_PIXELS, roll) > 50 for roll in rolls)


def test_drawings_and_tunes_show_on_the_page(page):
    from selenium.webdriver.common.by import By

    fill(page, style="hershey", n=2, seed=1)
    (card,) = generate(page)
    images = card.find_elements(By.CSS_SELECTOR, "img.drawing")
    assert len(images) == 2 and all(page.execute_script("return arguments[0].naturalWidth", i) > 0 for i in images)
    assert not card.find_elements(By.TAG_NAME, "audio")
    fill(page, style="irish", seed=2, length=300)
    (card,) = generate(page)
    assert card.find_element(By.CSS_SELECTOR, "pre.text").text.startswith("X:")
    assert page.execute_script(COLOURED_PIXELS, card.find_element(By.CSS_SELECTOR, "canvas.roll")) > 50
