"""The built site read as a reader would: headless Chromium opens the home page, a lecture and an API page from disk
and finds them rendered (math typeset by the bundled MathJax, no raw TeX, figures loaded, no console errors, nothing
fetched from the network), writing a screenshot of each to the build folder; every lecture's math typesets without a
TeX error. `make docs` builds the site and runs this; with DOCS_SITE_REQUIRED set (CI: `make docs
BROWSER_CHECK=required`) a missing site, browser or driver fails instead of skipping."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "docs" / "_build" / "html"
SHOTS = SITE.parent / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
PAGES = {"home": "index.html", "tutorial": "tutorials/01_forward_process_elbo.html",
         "api": "api/generated/denoisekit.processes.discrete.html"}
# A sandbox-free, offline headless start (the machine has no network: background services would only fail)
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def need(condition: bool, why: str) -> None:
    """Skip when the site or browser is missing, unless `make docs` asked for the check (then fail)."""
    if not condition:
        if os.environ.get("DOCS_SITE_REQUIRED"):
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture(scope="module")
def browser():
    need((SITE / "index.html").exists(), f"no built site at {SITE} (make docs)")
    need(Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM} (Debian's package chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need(False, "playwright is not installed (the docs extra)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def open_page(browser, path: Path, shot: str = ""):
    """Load one page from disk (a screenshot named `shot` into the build folder); returns (page, console errors, page
    errors, requests that left the disk)."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors, crashes, remote = [], [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: crashes.append(str(e)))
    page.on("request", lambda r: remote.append(r.url) if not r.url.startswith(("file:", "data:", "blob:")) else None)
    page.goto(path.as_uri(), wait_until="load")
    page.wait_for_load_state("networkidle")
    typeset(page)
    if shot:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{shot}.png"), full_page=False)
    return page, errors, crashes, remote


def typeset(page) -> None:
    """Wait for MathJax (on pages that load it) to finish typesetting."""
    if page.evaluate("typeof MathJax !== 'undefined'"):
        from playwright.sync_api import TimeoutError as Timeout
        try:
            page.wait_for_function("MathJax.startup && MathJax.startup.promise", timeout=30000)
        except Timeout:
            pytest.fail(f"MathJax did not start on {page.url} (is its bundled copy in _static/mathjax?)")
        page.evaluate("MathJax.startup.promise.then(() => true)")


def check_common(page, errors, crashes, remote) -> None:
    assert not errors and not crashes, (errors, crashes)
    assert not remote, f"fetched from the network: {remote}"
    text = page.inner_text("body")
    assert "$$" not in text and "\\frac" not in text and "\\mathcal" not in text, "raw TeX on the page"
    broken = page.eval_on_selector_all("img", "els => els.filter(e => !(e.complete && e.naturalWidth > 0))"
                                              ".map(e => e.src)")
    assert not broken, f"images that did not load: {broken}"


@pytest.mark.parametrize("setting, message", [
    ("BROWSER_CHECK=always", "BROWSER_CHECK: expected auto or required, got 'always'"),
    ("OFFLINE=scripts/nowhere.sh", "OFFLINE: expected an executable command prefix such as scripts/offline.sh, got "
                                   "'scripts/nowhere.sh'")])
def test_make_docs_refuses_a_bad_setting_in_one_line(setting, message):
    """`make docs BROWSER_CHECK=auto|required OFFLINE=COMMAND`: anything else stops before any work (the
    prerequisites emptied and python and pip replaced by `false` here, so a broken guard fails at once instead of
    installing and building)."""
    out = subprocess.run(["make", "-s", "--no-print-directory", "docs", setting, "TESTDEPS=", "PY=false", "PIP=false"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and out.stdout == ""
    assert out.stderr.splitlines()[0] == message


def test_the_offline_wrapper_cuts_the_network_and_keeps_loopback():
    """scripts/offline.sh (CI's OFFLINE for `make docs`): a connection out fails, one over 127.0.0.1 works."""
    probe = ("import socket\n"
             "srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen()\n"
             "socket.create_connection(srv.getsockname(), timeout=5).close()\n"
             "try:\n    socket.create_connection(('1.1.1.1', 53), timeout=5); print('network')\n"
             "except OSError:\n    print('offline')\n")
    out = subprocess.run([str(ROOT / "scripts" / "offline.sh"), sys.executable, "-c", probe], capture_output=True,
                         text=True, timeout=60)
    if out.returncode != 0 and "unshare" in out.stderr:
        need(False, f"no network namespaces here: {out.stderr.strip()}")
    assert out.returncode == 0 and out.stdout.strip() == "offline", out
    bare = subprocess.run([str(ROOT / "scripts" / "offline.sh")], capture_output=True, text=True, timeout=60)
    assert bare.returncode == 2 and bare.stderr.startswith("offline.sh: expected a command to run")


def test_the_readmes_links_name_files_that_exist_and_every_lecture():
    """The README (outside the site's link check) links only to files that exist, and to every lecture."""
    text = (ROOT / "README.md").read_text()
    targets = [t.split("#")[0] for t in re.findall(r"\]\(([^)]+)\)", text) if "://" not in t]
    assert targets and all((ROOT / t).exists() for t in targets), [t for t in targets if not (ROOT / t).exists()]
    lectures = {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs" / "tutorials").glob("[0-9]*.py")}
    assert len(lectures) >= 15 and lectures <= set(targets), lectures - set(targets)


def test_home_page_renders(browser):
    page, *seen = open_page(browser, SITE / PAGES["home"], shot="home")
    check_common(page, *seen)
    assert "Start here" in page.inner_text("body")
    links = page.eval_on_selector_all("a.reference.internal", "els => els.map(e => e.getAttribute('href'))")
    assert any("tutorials/01_forward_process_elbo" in h for h in links) and any("api/" in h for h in links)


def test_tutorial_renders_math_and_figures(browser):
    page, *seen = open_page(browser, SITE / PAGES["tutorial"], shot="tutorial")
    check_common(page, *seen)
    boxes = page.eval_on_selector_all(
        "mjx-container", "els => els.map(e => [e.getBoundingClientRect().width, e.getBoundingClientRect().height])")
    assert len(boxes) >= 20, "too few typeset formulas"
    assert all(w > 0 and h > 0 for w, h in boxes), boxes[:5]
    assert not page.query_selector("mjx-merror"), "a formula failed to typeset"
    fonts = page.evaluate("Array.from(document.fonts).filter(f => f.family.startsWith('MJXZERO') || "
                          "f.family.startsWith('MJXTEX')).map(f => f.status)")
    assert fonts and "error" not in fonts, fonts               # MathJax's own fonts, loaded from the site
    fractions = page.eval_on_selector_all("mjx-container[display] mjx-mfrac",
                                          "els => els.map(e => e.getBoundingClientRect().height)")
    line = page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)")
    assert fractions and max(fractions) > 1.3 * line, "fractions are not stacked"
    figures = page.eval_on_selector_all("img", "els => els.filter(e => e.naturalWidth > 200).length")
    assert figures >= 2, "the lecture's figures are missing"
    assert "Traceback" not in page.inner_text("body")


def test_every_lecture_typesets_and_shows_its_figures(browser):
    """Each lecture's page: formulas typeset with no TeX error and none wider than the column (at 1280 px), at least
    one figure, no console error."""
    lectures = sorted((SITE / "tutorials").glob("[0-9]*.html"))
    assert len(lectures) >= 15
    for path in lectures:
        page, errors, crashes, _ = open_page(browser, path)
        assert page.query_selector_all("mjx-container") and not page.query_selector("mjx-merror"), path.name
        wide = page.eval_on_selector_all("mjx-container[display]", "els => els.filter(e => e.scrollWidth > "
                                                                   "e.clientWidth + 1).map(e => e.textContent)")
        assert not wide, (path.name, wide)
        assert page.eval_on_selector_all("img", "els => els.filter(e => e.naturalWidth > 200).length") >= 1, path.name
        assert not errors and not crashes, (path.name, errors, crashes)
        page.close()


def test_api_page_renders(browser):
    page, *seen = open_page(browser, SITE / PAGES["api"], shot="api")
    check_common(page, *seen)
    signature = page.query_selector("dt#denoisekit\\.processes\\.discrete\\.DiscreteVP")
    assert signature is not None and "DiscreteVP" in signature.inner_text()
    assert "Ho et al. 2020" in page.inner_text("body")   # the docstring's citation
