#!/usr/bin/python3
"""Drives berth's dashboard in headless Chromium as a person would (Debian's chromium,
chromium-driver and python3-selenium): logs in through a one-time URL, sees the apps, rolls
back a release, sets a config value, follows the logs. Saves a screenshot of each page.

Usage: drive.py LOGIN_URL APP SHOTS_DIR
Prints one line per step; exits non-zero (with the reason) on the first that fails.
"""
import os
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

login_url, app, shots = sys.argv[1:4]
os.makedirs(shots, exist_ok=True)

options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
    options.add_argument(flag)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
wait = WebDriverWait(driver, 30)


def shot(name):
    driver.save_screenshot(os.path.join(shots, f"{name}.png"))
    print(f"step {name}: ok", flush=True)


def submitted(click):
    """Does `click`, then waits until the page it left is gone (a form's answer is a new
    page: the old one's message must not be taken for it)."""
    old = driver.find_element(By.TAG_NAME, "html")
    click()
    wait.until(ready.staleness_of(old))


def flash():
    """The message the last form left: (kind, text)."""
    found = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#done, #error"))
    return found[0].get_attribute("id"), found[0].text


try:
    driver.get(login_url)
    row = wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, f'#apps tr[data-app="{app}"]')))
    assert "running" in row.text, f"the app's row says {row.text!r}"
    shot("apps")

    row.find_element(By.LINK_TEXT, app).click()
    wait.until(ready.text_to_be_present_in_element((By.ID, "app"), app))
    status = driver.find_element(By.ID, "status").text
    assert status == "running", f"the app page says {status!r}"
    assert f"{app}.example.com" in driver.find_element(By.ID, "domains").text, "its domain is listed"
    assert "Releasing v2" in driver.find_element(By.ID, "deploy-log").text, "the last push's output is shown"
    shot("app")

    def roll_back():
        driver.find_element(By.CSS_SELECTOR, 'tr[data-version="1"] button.rollback').click()
        wait.until(ready.alert_is_present()).accept()

    submitted(roll_back)
    kind, text = flash()
    assert kind == "done", f"the rollback said {text!r}"
    shot("rollback")

    form = driver.find_element(By.ID, "config-set")
    form.find_element(By.NAME, "key").send_keys("GREETING")
    form.find_element(By.NAME, "value").send_keys("from the browser")
    submitted(form.find_element(By.TAG_NAME, "button").click)
    kind, text = flash()
    assert kind == "done", f"config said {text!r}"
    row = driver.find_element(By.CSS_SELECTOR, 'tr[data-key="GREETING"]')
    assert "from the browser" not in row.text, "values are hidden until shown"
    submitted(driver.find_element(By.ID, "reveal").click)
    wait.until(ready.text_to_be_present_in_element((By.CSS_SELECTOR, 'tr[data-key="GREETING"] .value'), "from the browser"))
    shot("config")

    logs = driver.find_element(By.ID, "logs")
    driver.execute_script("arguments[0].scrollIntoView()", logs)
    wait.until(ready.text_to_be_present_in_element((By.ID, "logs"), "tick"))
    shot("logs")
    print("done", flush=True)
except Exception as error:  # one line: the step's failure
    shot("failed")
    print(f"failed: {type(error).__name__}: {error}".splitlines()[0], file=sys.stderr)
    sys.exit(1)
finally:
    driver.quit()
