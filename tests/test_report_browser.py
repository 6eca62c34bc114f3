"""report.html of the bundled model as a browser shows it: headless Chromium renders the page, and
the test reads the rendered DOM (--dump-dom) and a screenshot (--screenshot).

Chromium comes from Debian (`apt-get install chromium`, done by `make install`); a missing browser
fails this test, like a missing simulator fails the simulation tests.
"""

import html.parser
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from codesign.cli import main

WINDOW = (1280, 4000)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]


def chromium() -> str:
    found = next((shutil.which(name) for name in ("chromium", "chromium-browser") if shutil.which(name)), None)
    if found is None:
        pytest.fail("chromium not found: on Debian/Ubuntu run 'apt-get install chromium' ('make install' does)")
    return found


def browse(page, profile, *args):
    done = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class Page(html.parser.HTMLParser):
    """Headings, table cells (with the heading of their section) and images of a rendered page."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[str] = []
        self.cells: list[tuple[str, str]] = []
        self.images: list[dict] = []
        self._open: str | None = None
        self._text = ""

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))
        if tag in ("h2", "td"):
            self._open, self._text = tag, ""

    def handle_data(self, data):
        if self._open:
            self._text += data

    def handle_endtag(self, tag):
        if tag == self._open == "h2":
            self.headings.append(self._text.strip())
        elif tag == self._open == "td":
            self.cells.append((self.headings[-1] if self.headings else "", self._text.strip()))
        if tag == self._open:
            self._open = None


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The bundled model's folder, its report measured on digits, rendered by Chromium."""
    root = tmp_path_factory.mktemp("browser")
    out = root / "out"
    assert main(["generate", "--out", str(out)]) == 0
    assert main(["report", str(out), "--data", "digits"]) == 0
    page = out / "report" / "report.html"
    dom = browse(page, root / "profile-dom", "--dump-dom")
    shot = root / "report.png"
    browse(page, root / "profile-shot", f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--screenshot={shot}")
    parsed = Page()
    parsed.feed(dom)
    return parsed, shot


def test_the_page_opens_with_the_design_point_table(rendered):
    page, _ = rendered
    assert page.headings[:2] == ["Design point", "Accuracy (test split)"]
    point = dict(zip(*[iter([text for heading, text in page.cells if heading == "Design point"])] * 2))
    assert point["crossbar (R × C)"] == "128×128" and point["cell bits c"] == "2"
    assert point["technology node"] == "32 nm" and point["ADC sample rate of the cost models"] == "1.20 GS/s per ADC"
    accuracy = [text for heading, text in page.cells if heading == "Accuracy (test split)"]
    assert "99.44 %" in accuracy and "99.17 %" in accuracy


def test_the_page_has_at_least_six_plots(rendered):
    page, _ = rendered
    plots = [image for image in page.images if image.get("src", "").startswith("data:image/png;base64,")]
    assert len(plots) >= 6 and all(image.get("alt") for image in plots)


def test_no_table_cell_of_the_rendered_page_prints_an_exponent(rendered):
    page, _ = rendered
    assert len(page.cells) > 100
    assert [text for _, text in page.cells if re.search(r"\d[eE][+-]?\d", text)] == []


def test_the_screenshot_is_the_window_and_not_blank(rendered):
    _, shot = rendered
    image = Image.open(shot).convert("RGB")
    assert image.size == WINDOW
    pixels = np.asarray(image.resize((128, 400))).reshape(-1, 3).astype(int)
    ink = float((pixels.sum(axis=1) < 600).mean())
    assert 0.05 < ink < 0.9, ink                          # text, tables and plots, neither empty nor a solid block
    assert len({tuple(p) for p in pixels}) > 200          # plot colours, not one flat shade
