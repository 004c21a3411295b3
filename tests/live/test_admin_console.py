"""The admin console in a real headless Chromium (Debian's, through its chromedriver)."""

import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as shown
from selenium.webdriver.support.ui import WebDriverWait

from scoresvc import create_app
from scoresvc.settings import Settings
from scoresvc.storage.database import open_database
from scoresvc.storage.repository import Repository
from tests.live.server import LiveServer

TOKEN = "console-test-token-0123456789abcdefgh"
# Where to find the browser; CI installs Debian's chromium and chromium-driver (.ci/run).
CHROMIUM = os.environ.get("SCORESVC_TEST_CHROMIUM") or shutil.which("chromium")
CHROMEDRIVER = os.environ.get("SCORESVC_TEST_CHROMEDRIVER") or shutil.which("chromedriver")
# Set to a path (docs/admin-console.png) to keep the level page's screenshot there.
SCREENSHOT_VARIABLE = "SCORESVC_CONSOLE_SCREENSHOT"
CHEAT = 666_666
WAIT_SECONDS = 10


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """A headless Chromium. Its absence fails the test: the console must be tried in one."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail(
            "no chromium or chromedriver on PATH: apt-get install chromium chromium-driver "
            "(or set SCORESVC_TEST_CHROMIUM and SCORESVC_TEST_CHROMEDRIVER)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in [
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--window-size=1440,900",
        "--lang=en-US",
    ]:
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=ChromeService(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def server(tmp_path) -> Iterator[LiveServer]:
    """A server with the admin API on, over a file with a few levels of plausible players."""
    url = f"sqlite:///{tmp_path}/scores.db"
    create_app(Settings(database_url=url)).close()
    database = open_database(url)
    repository = Repository(database)
    players = random.Random(2026)
    for level, count in [(1, 340), (2, 130), (3, 87), (7, 512), (12, 45)]:
        users = players.sample(range(1_000, 999_999), count)
        for user in users:
            repository.record_score(level, user, players.randint(1_000, 240_000))
    repository.record_score(2, CHEAT, 2_147_483_647)
    repository.record_score(3, CHEAT, 150_000)
    database.close()
    env = {"SCORESVC_ADMIN_TOKEN": TOKEN}
    server = LiveServer(tmp_path / "server.log", "--database", url, env=env).start()
    yield server
    server.kill()


def wait(browser: WebDriver):
    return WebDriverWait(browser, WAIT_SECONDS)


def rows(browser: WebDriver, table: str = "scores") -> list[tuple[str, str]]:
    """(rank, user) of each row of a table, as the page shows them (rank None: no ranks)."""
    # Read in one script: the page may redraw the table between two calls of the driver.
    found = browser.execute_script(
        "return [...document.querySelectorAll(arguments[0])]"
        ".map((row) => [row.dataset.rank || null, row.dataset.user])",
        f"#{table} tbody tr[data-user]",
    )
    return [tuple(row) for row in found]


def sign_in(browser: WebDriver, server: LiveServer, token: str) -> None:
    browser.get(f"http://127.0.0.1:{server.port}/admin/")
    browser.execute_script("sessionStorage.clear()")
    browser.refresh()
    field = wait(browser).until(shown.visibility_of_element_located((By.ID, "token")))
    field.clear()
    field.send_keys(token)
    browser.find_element(By.ID, "sign-in").click()


def confirm(browser: WebDriver) -> None:
    button = wait(browser).until(shown.element_to_be_clickable((By.ID, "confirm-ok")))
    button.click()
    wait(browser).until(shown.invisibility_of_element_located((By.ID, "confirm")))


def wait_for_rows(browser: WebDriver, predicate, table: str = "scores"):
    return wait(browser).until(lambda b: predicate(rows(b, table)) and rows(b, table))


def test_a_wrong_token_shows_a_clear_error(browser, server):
    sign_in(browser, server, "not-the-token-at-all-0123456789abcdef")
    error = wait(browser).until(shown.visibility_of_element_located((By.ID, "login-error")))
    assert "not accepted" in error.text
    assert "401" in error.text
    assert not browser.find_element(By.ID, "console").is_displayed()
    assert browser.execute_script("return sessionStorage.length") == 0


def test_sign_in_open_a_level_page_ban_unban_and_remove_a_score(browser, server, tmp_path):
    sign_in(browser, server, TOKEN)
    level_two = wait(browser).until(
        shown.element_to_be_clickable((By.CSS_SELECTOR, '#levels button[data-level="2"]'))
    )
    assert "131 players" in level_two.text
    assert [b.get_attribute("data-level") for b in levels(browser)] == ["1", "2", "3", "7", "12"]

    # Open the level: the first page, the cheat on top.
    level_two.click()
    first = wait_for_rows(browser, lambda found: len(found) == 100)
    assert first[0] == ("1", str(CHEAT))
    assert [rank for rank, _ in first] == [str(n) for n in range(1, 101)]
    assert "of 131" in browser.find_element(By.ID, "page-where").text
    keep_screenshot(browser, tmp_path)

    # Page on and back.
    browser.find_element(By.ID, "next-page").click()
    second = wait_for_rows(browser, lambda found: found and found[0][0] == "101")
    assert len(second) == 31
    assert not browser.find_element(By.ID, "next-page").is_enabled()
    browser.find_element(By.ID, "prev-page").click()
    wait_for_rows(browser, lambda found: found and found[0][0] == "1")

    # Ban the cheat: gone from the list, their places taken by the next players.
    ban_button(browser, CHEAT).click()
    confirm(browser)
    banned = wait_for_rows(browser, lambda found: str(CHEAT) not in {u for _, u in found})
    assert banned[0] == ("1", first[1][1])
    assert "130 players" in level_button(browser, 2).text
    assert server.request("GET", f"/{CHEAT}/login")[0] == 403
    assert str(CHEAT) not in server.request("GET", "/2/highscorelist")[1]
    assert "banned" in toast(browser)

    # The bans tab lists them; unban: back on top.
    tab(browser, "bans").click()
    ban_rows = wait_for_rows(browser, lambda found: len(found) == 1, table="bans")
    assert ban_rows[0][1] == str(CHEAT)
    browser.find_element(By.CSS_SELECTOR, f'#bans tr[data-user="{CHEAT}"] button.unban').click()
    wait(browser).until(lambda b: "Nobody is banned" in b.find_element(By.ID, "bans").text)
    tab(browser, "level").click()
    wait_for_rows(browser, lambda found: found and found[0] == ("1", str(CHEAT)))
    assert server.request("GET", f"/2/rank/{CHEAT}") == (200, "1")

    # Remove a score: asked first; cancelling changes nothing.
    victim = first[4][1]
    remove_button(browser, victim).click()
    browser.find_element(By.ID, "confirm-cancel").click()
    assert victim in {user for _, user in rows(browser)}
    remove_button(browser, victim).click()
    confirm(browser)
    removed = wait_for_rows(browser, lambda found: victim not in {u for _, u in found})
    assert len(removed) == 100
    assert server.request("GET", f"/2/rank/{victim}")[0] == 404
    assert "130 players" in level_button(browser, 2).text

    # Every change is in the audit log, newest first.
    tab(browser, "audit").click()
    audit = wait(browser).until(lambda b: audit_actions(b) if len(audit_actions(b)) == 3 else [])
    assert audit == ["delete score", "unban", "ban"]
    assert_no_console_errors(browser)


def test_a_token_refused_later_signs_the_console_out(browser, server):
    sign_in(browser, server, TOKEN)
    wait(browser).until(shown.element_to_be_clickable((By.CSS_SELECTOR, "#levels button")))
    browser.execute_script("sessionStorage.setItem('scoresvc-admin-token', 'stale')")
    browser.find_element(By.ID, "reload-levels").click()
    error = wait(browser).until(shown.visibility_of_element_located((By.ID, "login-error")))
    assert "401" in error.text


def levels(browser: WebDriver):
    return browser.find_elements(By.CSS_SELECTOR, "#levels button[data-level]")


def level_button(browser: WebDriver, level: int):
    return browser.find_element(By.CSS_SELECTOR, f'#levels button[data-level="{level}"]')


def ban_button(browser: WebDriver, user: int | str):
    return browser.find_element(By.CSS_SELECTOR, f'#scores tr[data-user="{user}"] button.ban')


def remove_button(browser: WebDriver, user: int | str):
    return browser.find_element(By.CSS_SELECTOR, f'#scores tr[data-user="{user}"] button.remove')


def tab(browser: WebDriver, name: str):
    return browser.find_element(By.CSS_SELECTOR, f'nav.tabs button[data-tab="{name}"]')


def toast(browser: WebDriver) -> str:
    return wait(browser).until(shown.visibility_of_element_located((By.ID, "toast"))).text


def audit_actions(browser: WebDriver) -> list[str]:
    return [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#audit .badge")]


def assert_no_console_errors(browser: WebDriver) -> None:
    # A Content-Security-Policy refusal or a script error would show here.
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    expected = [entry for entry in errors if "status of 40" in entry["message"]]
    assert errors == expected


def keep_screenshot(browser: WebDriver, tmp_path: Path) -> None:
    """The level page, as the README shows it: kept where SCORESVC_CONSOLE_SCREENSHOT says."""
    browser.save_screenshot(str(tmp_path / "admin-console.png"))
    target = os.environ.get(SCREENSHOT_VARIABLE)
    if target:
        shutil.copyfile(tmp_path / "admin-console.png", target)
