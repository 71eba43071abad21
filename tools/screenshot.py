"""Render an HTML report in headless Chromium to a PNG, and tell whether the PNG is blank.

``python -m tools.screenshot HTML PNG [--width W --height H]`` (``make screenshot`` makes the
README picture with it from a real ``pipeline daily`` run). Chromium is Debian's ``chromium``
package; the flags keep it off the network and away from the user's profile.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--disable-dev-shm-usage"]


def find_browser() -> str | None:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


LAYOUT_KEY = "ivcrush-layout"      # the page's <meta name=...> and the PNG's text chunk


def layout_of_page(html: Path) -> str | None:
    """The layout version stamped in a page (``<meta name="ivcrush-layout" content=...>``)."""
    import re

    found = re.search(rf'<meta name="{LAYOUT_KEY}" content="([^"]*)"', Path(html).read_text(errors="replace"))
    return found.group(1) if found else None


def layout_of_png(png: Path) -> str | None:
    """The layout version :func:`screenshot` stamped in a PNG's metadata (None when absent)."""
    from PIL import Image

    with Image.open(png) as image:
        return image.info.get(LAYOUT_KEY)


def _stamp(png: Path, layout: str) -> None:
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(LAYOUT_KEY, layout)
    with Image.open(png) as image:
        image.load()
        stamped = image.copy()
    stamped.save(png, pnginfo=info)


def screenshot(html: Path, png: Path, width: int = 1400, height: int = 1800, timeout: float = 120.0,
               section: int | None = None) -> Path:
    """Render ``html`` (a local file; only its ``section``-th event section when given: the first
    is open) to ``png``, with the page's layout version in the PNG's metadata; raises
    RuntimeError when the browser fails."""
    browser = find_browser()
    if browser is None:
        raise RuntimeError("no Chromium found (Debian: apt-get install chromium)")
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="ivcrush-chromium-") as profile:
        target = Path(html).resolve()
        if section:     # a copy showing only that section (a scrolled headless screenshot is blank)
            target = Path(profile) / "page.html"
            only = (f"<style>body>*{{display:none!important}}"
                    f"body>details.event:nth-of-type({section}){{display:block!important}}</style></head>")
            target.write_text(Path(html).read_text().replace("</head>", only, 1))
        command = [browser, *FLAGS, f"--user-data-dir={profile}/user", f"--window-size={width},{height}",
                   f"--screenshot={png}", target.as_uri()]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=profile)
    if not png.exists():
        raise RuntimeError(f"chromium wrote no screenshot (exit {done.returncode}): {done.stderr[-2000:]}")
    layout = layout_of_page(html)
    if layout is not None:
        _stamp(png, layout)
    return png


PROBE = """<script>
(function () {
  var table = document.getElementById("ranked");
  var out = {scrollWidth: document.documentElement.scrollWidth,
             tableScrollWidth: table ? table.scrollWidth : null,
             tableClientWidth: table ? table.getBoundingClientRect().width : null,
             rowHeights: table ? Array.from(table.tBodies[0].rows).map(function (r) { return r.getBoundingClientRect().height; }) : []};
  var pre = document.createElement("pre");
  pre.id = "ivcrush-probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"""


def measure(html: Path, width: int = 1400, height: int = 1000, timeout: float = 120.0) -> dict:
    """Lay ``html`` out in headless Chromium at ``width`` px and return what a probe script (added
    to a temporary copy; the page itself has none) measured: ``scrollWidth`` of the document,
    the ranked table's ``tableScrollWidth``, ``tableClientWidth`` and the body ``rowHeights``."""
    import json
    import re

    browser = find_browser()
    if browser is None:
        raise RuntimeError("no Chromium found (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="ivcrush-chromium-") as profile:
        copy = Path(profile) / "page.html"
        copy.write_text(Path(html).read_text().replace("</body>", PROBE + "</body>", 1))
        command = [browser, *FLAGS, f"--user-data-dir={profile}/user", f"--window-size={width},{height}",
                   "--dump-dom", copy.as_uri()]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=profile)
    found = re.search(r'<pre id="ivcrush-probe">(.*?)</pre>', done.stdout, flags=re.S)
    if not found:
        raise RuntimeError(f"chromium measured nothing (exit {done.returncode}): {done.stderr[-2000:]}")
    return json.loads(found.group(1).replace("&quot;", '"'))


def blank_share(png: Path) -> float:
    """Share of pixels equal to the most common colour (1.0 = a blank page)."""
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3)
    _, counts = np.unique(pixels, axis=0, return_counts=True)
    return float(counts.max() / counts.sum())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1800)
    parser.add_argument("--section", type=int, default=None, help="only the N-th event section (1: the top event)")
    args = parser.parse_args(argv)
    out = screenshot(args.html, args.png, args.width, args.height, section=args.section)
    share = blank_share(out)
    if share > 0.995:
        print(f"error: {out} is blank ({share:.1%} one colour)", file=sys.stderr)
        return 1
    print(f"{out} ({share:.0%} background)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
