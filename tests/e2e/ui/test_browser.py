"""The delivery page in a real browser: Debian's headless Chromium driven by selenium against a
real `cibridge serve` (gunicorn + dispatcher) on 127.0.0.1, its store filled with 200 deliveries
of every outcome, refused ones among them (and one refused by the running bridge itself).
Screenshots of each page go to the test's tmp dir (printed at the end)."""
from __future__ import annotations

import re
import shutil
import time

import pytest
import requests
from helpers.payloads import load_payload, payload_files, sign_github
from helpers.process import BridgeProcess, wait_for
from helpers.rules import BUILD_EVERY_PUSH, GITHUB_SECRET, SECRET_ENV
from helpers.ui import SCRIPT_BRANCH, fill

from bridge.store import Store
from bridge.store.reads import DeliveryFilter

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
pytestmark = pytest.mark.skipif(not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)),
                                reason="Debian's chromium and chromium-driver are not installed "
                                       "(apt-get install chromium chromium-driver; .ci/run does)")


@pytest.fixture(scope="module")
def bridge(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ui-bridge")
    store = Store.open(f"sqlite:///{directory / 'var' / 'bridge.db'}", durability="normal")
    try:
        filled = fill(store, 180, start=time.time() - 200 * 60, step=60.0, refused=20)
    finally:
        store.close()
    proc = BridgeProcess(directory, BUILD_EVERY_PUSH, env=SECRET_ENV).start()
    proc.filled = filled
    body, headers = load_payload("github/push__f110-single-commit.json")
    wrong = {**headers, "X-GitHub-Delivery": "live-refusal", **sign_github(body, "not-the-secret")}
    assert proc.post("github", body, wrong).status_code == 401       # refused by the bridge itself
    wait_for(lambda: _refusals(proc) == 21, timeout=30, what="the live refusal's row")
    headers.update(sign_github(body, GITHUB_SECRET))                 # one real push, newest
    proc.real = proc.post("github", body, headers).json()["delivery"]
    yield proc
    proc.stop()


def _refusals(proc) -> int:
    store = proc.store()
    try:
        return len(store.delivery_page(DeliveryFilter(outcome="refused"), limit=100).rows)
    finally:
        store.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-dev-shm-usage", "--window-size=1400,1000",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def shot(browser, tmp_path):
    taken = []

    def take(name: str):
        path = tmp_path / f"{name}.png"
        browser.save_screenshot(str(path))
        taken.append(path)
    yield take
    print("screenshots:", *taken)


def rows(browser):
    return browser.find_elements(By.CSS_SELECTOR, "#deliveries tr.delivery")


def test_list_filter_and_open_a_delivery_with_its_trace(bridge, browser, shot):
    browser.get(f"{bridge.url}/ui/")
    assert len(rows(browser)) == 50
    assert browser.find_elements(By.CSS_SELECTOR, "#chart svg path")      # the last 24 hours
    badges = {b.text for b in browser.find_elements(By.CSS_SELECTOR, "#deliveries .badge")}
    assert {"accepted", "no match", "ignored", "duplicate", "refused", "build: dead",
            "build: succeeded"} <= badges
    assert browser.find_elements(By.CSS_SELECTOR, "#deliveries tr.refused")
    assert browser.find_elements(By.CSS_SELECTOR, "#chart svg path.o-refused")
    shot("1-deliveries")

    browser.find_element(By.ID, "f-repo").send_keys("acme/api")
    Select(browser.find_element(By.ID, "f-state")).select_by_value("dead")
    browser.find_element(By.ID, "apply").click()
    WebDriverWait(browser, 30).until(lambda b: "state=dead" in b.current_url)
    found = rows(browser)
    assert found and all(r.find_element(By.CSS_SELECTOR, "td.repo").text == "acme/api" for r in found)
    assert all("build: dead" in r.text for r in found)
    shot("2-filtered-acme-api-dead")

    browser.get(f"{bridge.url}/ui/")
    rows(browser)[0].find_element(By.CSS_SELECTOR, "a.open").click()      # the real push
    WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.ID, "trace"))
    assert browser.find_element(By.ID, "delivery-id").text == bridge.real
    verdicts = browser.find_element(By.ID, "verdicts").text
    trace = browser.find_element(By.ID, "trace").text
    assert "build match" in verdicts and "build match" in trace and "push f110/test refs/heads/test" in trace
    browser.find_element(By.CSS_SELECTOR, "#body summary").click()         # the body, unfolded
    shot("3-delivery-with-trace")

    browser.get(f"{bridge.url}/ui/deliveries/{bridge.filled.script_delivery}")
    assert browser.find_element(By.ID, "ref").text == f"refs/heads/{SCRIPT_BRANCH}"
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text                                       # the branch ran nothing
    shot("4-script-branch-as-text")


def test_filter_the_refused_and_open_one(bridge, browser, shot):
    browser.get(f"{bridge.url}/ui/")
    Select(browser.find_element(By.ID, "f-outcome")).select_by_value("refused")
    browser.find_element(By.ID, "apply").click()
    WebDriverWait(browser, 30).until(lambda b: "outcome=refused" in b.current_url)
    found = rows(browser)
    assert len(found) == 21 and all("refused" in r.get_attribute("class") for r in found)
    assert all(r.find_element(By.CSS_SELECTOR, ".badge").text == "refused" for r in found)
    live = found[0]          # the newest: refused by the running bridge
    assert "github: X-Hub-Signature-256 does not match the body" in live.text and "401" in live.text
    assert any("unknown source 'nope'" in r.text for r in found)
    shot("8-refused-only")
    live.find_element(By.CSS_SELECTOR, "a.open").click()
    WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.ID, "refusal-id"))
    fields = browser.find_element(By.ID, "fields").text
    assert "live-refusal" in fields and "127.0.0.1" in fields and "401" in fields
    shot("9-one-refusal")


def test_retry_a_dead_job_and_see_it_succeed(bridge, browser, shot):
    job = bridge.filled.by_state["dead"][-1]         # the <script> branch's job
    browser.get(f"{bridge.url}/ui/attention?state=dead")
    browser.find_element(By.CSS_SELECTOR, f"#job-row-{job} a.retry").click()
    shot("5-confirm-retry")
    browser.find_element(By.ID, "confirm").click()
    WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.ID, "result"))
    assert browser.find_element(By.ID, "result").text == f"job {job} queued again"
    delivery = bridge.filled.script_delivery
    deadline = time.monotonic() + 60
    while True:          # the dispatcher's memory target finishes it; wait, however long it takes
        browser.get(f"{bridge.url}/ui/deliveries/{delivery}")
        state = browser.find_element(By.CSS_SELECTOR, f"#job-{job} h3 .badge").text
        if state == "succeeded" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert state == "succeeded", bridge.logs()[-2000:]
    assert "queued again by local (was dead)" in browser.find_element(By.ID, f"job-{job}").text
    shot("6-retried-and-succeeded")


def test_a_post_without_the_csrf_token_is_refused(bridge):
    job = bridge.filled.by_state["dead"][0]
    resp = requests.post(f"{bridge.url}/ui/jobs/{job}/retry", data={"confirm": "yes"}, timeout=10)
    assert resp.status_code == 400 and "CSRF" in resp.text
    store = bridge.store()
    try:
        assert store.find_jobs(ids=[job])[0]["state"] == "dead"
    finally:
        store.close()


def test_try_a_payload(bridge, browser, shot):
    body, _ = load_payload(next(p for p in payload_files("github") if re.search(r"push__.*single", p)))
    browser.get(f"{bridge.url}/ui/explain")
    area = browser.find_element(By.ID, "t-payload")
    area.click()                        # typing 10 kB key by key is slow: insert it as a paste
    browser.execute_cdp_cmd("Input.insertText", {"text": body.decode("utf-8")})
    browser.find_element(By.ID, "t-explain").click()
    WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.ID, "trace"))
    trace = browser.find_element(By.ID, "trace").text
    assert "build" in trace and "match" in trace
    shot("7-try-a-payload")


def test_behind_the_proxys_prefix_links_carry_it(bridge):
    """As the shipped nginx site asks (X-Forwarded-Prefix: /bridge), through real gunicorn."""
    resp = requests.get(f"{bridge.url}/ui/", headers={"X-Forwarded-Prefix": "/bridge"}, timeout=10)
    assert resp.status_code == 200
    assert 'href="/bridge/ui/static/ui.css"' in resp.text and 'action="/bridge/ui/"' in resp.text
    forwarded = requests.get(f"{bridge.url}/ui/", headers={"X-Forwarded-Prefix": "/bridge",
                                                            "X-Forwarded-For": "203.0.113.7"}, timeout=10)
    assert forwarded.status_code == 403          # from outside: no token configured, no way in
