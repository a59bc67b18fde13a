"""Look at the lot report as a person does: run a small lot, render the report in
headless Chromium, and write screenshots to look at.

    .venv/bin/python tools/report_check.py [--out DIR] [--wafers N] [--seed N]
    .venv/bin/python tools/report_check.py --db URL --lot ID     # an existing lot

``make report-check`` runs the first form. The lot runs on the in-process
simulated line with a printer alarm planned at 3000 tool seconds
(``--faults``): the report then shows a wafer awaiting disposition, the alarm
and an expanded wafer section beside the good ones. Screenshots (1280 px wide): ``top.png`` (what a
reader sees first), ``full.png`` (the whole page) and, where ImageMagick's
``convert`` is installed, ``full.png`` cut into ``page-NN.png`` of 1600 px.
Needs Debian's ``chromium`` (``apt-get install -y chromium``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUMPLINE = ROOT / ".venv" / "bin" / "bumpline"
WIDTH = 1280
TOP_HEIGHT = 1600
FULL_HEIGHT = 14000  # taller than the report of a 12-wafer lot with one wafer expanded
PAGE_HEIGHT = 1600
CHROMIUM_TIMEOUT_S = 120


FAULTS = "printer-1:alarm=210@3000"


def run_lot(out: Path, wafers: int, seed: int) -> tuple[str, str]:
    """Run a lot on the simulated line; (database URL, lot id)."""
    db = f"sqlite:///{out / 'check.db'}"
    lot = f"CHK{time.strftime('%H%M%S')}"
    cmd = [str(BUMPLINE), "run", "--lot", lot, "--recipe", "rebump-hipb-snpb",
           "--wafers", str(wafers), "--speed", "800", "--seed", str(seed), "--db", db,
           "--faults", FAULTS,
           "--report-dir", str(out), "--plain"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 3):  # 3: the lot waits for a disposition
        sys.exit(f"report-check: the lot run failed ({done.returncode}): "
                 f"{(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    return db, lot


def write_report(db: str, lot: str, out: Path) -> Path:
    cmd = [str(BUMPLINE), "lot", "report", lot, "--db", db, "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"report-check: {done.stderr.strip()}")
    return out / lot / "report.html"


def screenshot(page: Path, png: Path, height: int) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("report-check: chromium not found (apt-get install -y chromium)")
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--window-size={WIDTH},{height}", f"--screenshot={png}", page.resolve().as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False,
                          timeout=CHROMIUM_TIMEOUT_S)
    if done.returncode != 0 or not png.is_file():
        sys.exit(f"report-check: chromium could not take {png.name}: {done.stderr.strip()[-300:]}")


def cut_pages(full: Path, out: Path) -> list[Path]:
    """full.png in PAGE_HEIGHT slices, where a real ImageMagick is installed."""
    convert = shutil.which("convert")
    if convert is None:
        return []
    pattern = out / "page-%02d.png"
    done = subprocess.run([convert, str(full), "-crop", f"{WIDTH}x{PAGE_HEIGHT}", "+repage",
                           str(pattern)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return []
    return sorted(out.glob("page-*.png"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="folder for the report and screenshots "
                        "(default: a new temporary folder)")
    parser.add_argument("--wafers", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--db", metavar="URL", help="report an existing lot instead")
    parser.add_argument("--lot", metavar="ID", help="the existing lot (with --db)")
    args = parser.parse_args(argv)
    if bool(args.db) != bool(args.lot):
        parser.error("--db and --lot go together")
    out = args.out or Path(tempfile.mkdtemp(prefix="report-check-"))
    out.mkdir(parents=True, exist_ok=True)
    db, lot = (args.db, args.lot) if args.db else run_lot(out, args.wafers, args.seed)
    page = write_report(db, lot, out)
    top, full = out / "top.png", out / "full.png"
    screenshot(page, top, TOP_HEIGHT)
    screenshot(page, full, FULL_HEIGHT)
    pages = cut_pages(full, out)
    print(f"report:      {page}")
    print(f"screenshots: {top}, {full}" + (f", {len(pages)} pages {out}/page-NN.png"
                                           if pages else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
