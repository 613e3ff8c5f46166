"""Headless Chromium for JavaScript-rendered review pages.

Uses Debian's ``chromium`` and ``chromium-driver`` packages (``/usr/bin/chromium``,
``/usr/bin/chromedriver``; ``make system-deps`` installs them). The driver path is always given
to Selenium explicitly, so Selenium Manager never runs (it cannot download on our machines).
Override the paths with ``REVIEWOPS_CHROMIUM_BINARY`` / ``REVIEWOPS_CHROMEDRIVER_PATH``.

    with Browser() as browser:
        html = browser.render("https://example.org/reviews", "li.box-comment")
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import weakref
from types import TracebackType
from typing import Self

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from reviewops.errors import SourceError

DEFAULT_BINARY = "/usr/bin/chromium"
DEFAULT_DRIVER = "/usr/bin/chromedriver"
BINARY_ENV = "REVIEWOPS_CHROMIUM_BINARY"
DRIVER_ENV = "REVIEWOPS_CHROMEDRIVER_PATH"
DEFAULT_USER_AGENT = "ReviewOps/0.1 (+https://github.com/reviewops)"
INSTALL_HINT = "apt-get install chromium chromium-driver"

# Without the background-networking switches Chromium phones home at start-up, and the closed
# network refuses those connections.
CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
)

# Some network failures (e.g. ERR_UNSAFE_PORT) do not fail driver.get(): Chromium shows its own
# error page (chrome-error://) instead.
_NET_ERROR_JS = """
if (!String(document.URL).startsWith("chrome-error://")) return null;
var code = document.querySelector(".error-code");
return (code && code.textContent.trim()) || "the page could not be loaded";
"""


class BrowserError(SourceError):
    """Chromium or chromedriver is missing, did not start, or a page did not render."""


def _first_line(exc: BaseException) -> str:
    text = getattr(exc, "msg", None) or str(exc) or type(exc).__name__
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def chromium_paths() -> tuple[str, str]:
    """(browser binary, chromedriver), from the environment or Debian's default locations."""
    binary = os.environ.get(BINARY_ENV) or DEFAULT_BINARY
    driver = os.environ.get(DRIVER_ENV) or DEFAULT_DRIVER
    for what, path, env in (("Chromium", binary, BINARY_ENV), ("chromedriver", driver, DRIVER_ENV)):
        if not os.path.isfile(path):
            raise BrowserError(f"{what} not found at {path}: {INSTALL_HINT} (as root), or set {env}")
        if not os.access(path, os.X_OK):
            raise BrowserError(f"{what} at {path} is not executable: {INSTALL_HINT} (as root), or set {env}")
    return binary, driver


def _shutdown(driver: webdriver.Chrome | None, profile: str) -> None:
    try:
        # Best effort: a driver that already died must not keep the profile on disk.
        with contextlib.suppress(Exception):
            if driver is not None:
                driver.quit()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


class Browser:
    """One headless Chromium, started on ``__enter__`` (or the first ``render``), gone on exit.

    Not thread-safe: use one Browser per thread.
    """

    def __init__(self, user_agent: str = DEFAULT_USER_AGENT, page_timeout: float = 20.0) -> None:
        self.user_agent = user_agent
        self.page_timeout = page_timeout
        self._driver: webdriver.Chrome | None = None
        self._profile: str | None = None
        self._finalizer: weakref.finalize | None = None
        self._closed = False

    # --- lifecycle -------------------------------------------------------------------------------
    def _start(self) -> webdriver.Chrome:
        if self._closed:
            raise BrowserError("browser is closed; open a new Browser()")
        if self._driver is not None:
            return self._driver
        binary, driver_path = chromium_paths()
        profile = tempfile.mkdtemp(prefix="reviewops-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = binary
        for arg in CHROMIUM_ARGS:
            options.add_argument(arg)
        options.add_argument(f"--user-data-dir={profile}")
        options.add_argument(f"--user-agent={self.user_agent}")
        try:
            driver = webdriver.Chrome(
                service=webdriver.ChromeService(executable_path=driver_path), options=options
            )
            driver.set_page_load_timeout(self.page_timeout)
        except (WebDriverException, OSError) as exc:
            shutil.rmtree(profile, ignore_errors=True)
            raise BrowserError(
                f"could not start Chromium ({binary}) with chromedriver ({driver_path}): {_first_line(exc)}"
            ) from exc
        self._driver, self._profile = driver, profile
        # Quits Chromium and removes the profile even when the caller forgets to close().
        self._finalizer = weakref.finalize(self, _shutdown, driver, profile)
        return driver

    def close(self) -> None:
        """Quit the driver and remove the temporary profile (idempotent)."""
        self._closed = True
        if self._finalizer is not None:
            self._finalizer()
        self._driver = self._profile = self._finalizer = None

    def __enter__(self) -> Self:
        self._start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- pages -----------------------------------------------------------------------------------
    @staticmethod
    def _net_error(driver: webdriver.Chrome) -> str | None:
        """The error code when Chromium shows its own error page (refused, DNS...) instead of ``url``."""
        try:
            return driver.execute_script(_NET_ERROR_JS)
        except WebDriverException:
            return None

    def render(self, url: str, wait_css: str, timeout: float = 10.0) -> str:
        """Load ``url``, wait until an element matches CSS ``wait_css``, return the rendered HTML."""
        driver = self._start()
        try:
            driver.get(url)
        except TimeoutException as exc:
            raise BrowserError(f"{url}: page did not load within {self.page_timeout}s") from exc
        except WebDriverException as exc:
            raise BrowserError(f"{url}: {_first_line(exc)}") from exc
        error = self._net_error(driver)
        if error:
            raise BrowserError(f"{url}: {error}")
        try:
            WebDriverWait(driver, timeout).until(EC.presence_of_element_located((By.CSS_SELECTOR, wait_css)))
        except TimeoutException as exc:
            raise BrowserError(f"{url}: {wait_css!r} did not appear within {timeout}s") from exc
        except WebDriverException as exc:
            raise BrowserError(f"{url}: {_first_line(exc)}") from exc
        try:
            return driver.page_source
        except WebDriverException as exc:
            raise BrowserError(f"{url}: {_first_line(exc)}") from exc
