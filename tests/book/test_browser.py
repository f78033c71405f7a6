"""The built book as a reader sees it: every page rendered in headless Chromium, offline.

Which book: ``KDLIB_BOOK_HTML`` (a built ``_build/html`` folder, e.g. the committed ``small``
notebooks built into a book), else the ``tiny`` book that the test session builds once (the
``tiny_book`` fixture, shared with the reproduce test; so the test is ``slow``). It skips, saying
why, when Debian's ``chromium`` / ``chromedriver`` (or ``selenium``) is absent; ``.ci/run``
installs them.

A page fails when, at a 1280 px wide window:

- its rendered text (code blocks excluded) still shows TeX delimiters (``\\(``, ``\\[``, ``$$``) or
  a ``$...\\macro...$`` span: MathJax did not typeset it (e.g. a CDN it could not reach);
- the page is wider than the viewport (a table or figure pushes the layout sideways);
- a figure is shown at less than :data:`MIN_SCALE` of its drawn size. matplotlib draws 10-pt
  labels at 100 dpi as ~14 px; below 0.8 of that they fall under ~11 px (about 8 pt), too small
  to read at page width.

Screenshots of every page (full height) are written to ``<book>/screenshots/`` beside ``_build``.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

WIDTH = 1280
MIN_SCALE = 0.8
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-dev-shm-usage", f"--window-size={WIDTH},900")
RAW_TEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$|\$[^$\n]{0,200}\\[A-Za-z]+[^$\n]{0,200}\$")

# Text of the article outside code blocks and typeset math.
VISIBLE_TEXT_JS = """
const root = document.querySelector('main') || document.body;
const skip = 'PRE,CODE,SCRIPT,STYLE,MJX-CONTAINER,TEXTAREA';
const out = [];
const walk = (n) => {
  if (n.nodeType === 3) { out.push(n.textContent); return; }
  if (n.nodeType !== 1 || skip.split(',').includes(n.tagName)) return;
  for (const c of n.childNodes) walk(c);
};
walk(root);
return out.join(' ');
"""
WAIT_MATHJAX_JS = """
const done = arguments[arguments.length - 1];
if (!window.MathJax || !MathJax.startup || !MathJax.startup.promise) { done('no-mathjax'); return; }
MathJax.startup.promise.then(() => done('ok')).catch((e) => done('error: ' + e));
"""
WIDE_ELEMENTS_JS = """
const w = document.documentElement.clientWidth;
return [...document.querySelectorAll('main *')]
  .filter((e) => e.getBoundingClientRect().right > w + 1)
  .slice(0, 3).map((e) => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().width) + 'px');
"""
IMAGES_JS = """
return [...document.querySelectorAll('main img')]
  .filter((i) => i.complete && i.naturalWidth > 0 && i.getBoundingClientRect().width > 0)
  .map((i) => [i.getAttribute('src'), i.naturalWidth, i.getBoundingClientRect().width]);
"""


@pytest.fixture(scope="module")
def book_html(request) -> Path:
    env = os.environ.get("KDLIB_BOOK_HTML")
    if env:
        html = Path(env)
        if not (html / "index.html").is_file():
            pytest.fail(f"KDLIB_BOOK_HTML={env} holds no built book (no index.html)")
        return html
    out, returncode = request.getfixturevalue("tiny_book")
    assert returncode == 0, "kdlib reproduce --profile tiny failed"
    return out / "book" / "_build" / "html"


def pages(html: Path) -> list[Path]:
    """The book's content pages (no index/search pages, no redirect stubs, nothing under ``_static``)."""
    return sorted(p for p in html.rglob("*.html")
                  if not p.relative_to(html).parts[0].startswith("_")
                  and p.name not in ("genindex.html", "search.html")
                  and 'http-equiv="Refresh"' not in p.read_text(errors="replace")[:2000])


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium absent: pip install 'kdlib[test]'")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_exe = shutil.which("chromedriver")
    if not chromium or not driver_exe:
        pytest.skip("Chromium absent: apt-get install -y chromium chromium-driver (Debian)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    from selenium.webdriver.chrome.service import Service

    drv = webdriver.Chrome(service=Service(driver_exe), options=opts)
    drv.set_script_timeout(60)
    yield drv
    drv.quit()


def inspect_page(drv, page: Path, shots: Path) -> list[str]:
    """Load one page, wait for MathJax, screenshot it; return its defects as sentences."""
    drv.set_window_size(WIDTH, 900)
    drv.get(page.as_uri())
    mathjax = drv.execute_async_script(WAIT_MATHJAX_JS)
    problems = [] if mathjax in ("ok", "no-mathjax") else [f"MathJax failed: {mathjax}"]
    raw = sorted({m.group(0)[:60] for m in RAW_TEX.finditer(drv.execute_script(VISIBLE_TEXT_JS))})
    if raw:
        problems.append(f"raw TeX in the text ({len(raw)}): {raw[:4]}")
    scroll, client = drv.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    if scroll > client:
        problems.append(f"page {scroll}px wide in a {client}px viewport: {drv.execute_script(WIDE_ELEMENTS_JS)}")
    for src, natural, shown in drv.execute_script(IMAGES_JS):
        if shown / natural < MIN_SCALE:
            problems.append(f"image {src} shown at {shown:.0f} of {natural} px (scale {shown / natural:.2f})")
    height = drv.execute_script("return document.documentElement.scrollHeight")
    drv.set_window_size(WIDTH, min(height + 150, 16000))
    drv.save_screenshot(str(shots / (page.stem + ".png")))
    return problems


@pytest.mark.slow
def test_every_page_renders_readably_offline(browser, book_html):
    html = book_html
    shots = html.parent.parent / "screenshots"
    shots.mkdir(exist_ok=True)
    report = {}
    for page in pages(html):
        problems = inspect_page(browser, page, shots)
        if problems:
            report[str(page.relative_to(html))] = problems
    assert not report, "\n".join(f"{page}:\n  " + "\n  ".join(p) for page, p in report.items())
