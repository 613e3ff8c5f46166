"""Crawl throughput against the local test site, side by side in one run:
reviews per second with the politeness delay at 0, then at the default settings (1 s between two
requests to one host), so the cost of politeness is a ratio. The JSON path is measured (Selenium
fallback off); one rendered CGV page through headless Chromium is timed on its own.

Usage: python bench/crawl.py [--reviews-per-day N]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "naver-movie-reviews" / "reviews.jsonl.gz"


def run(site, url: str, delay: float, day: int) -> dict:
    from reviewops.config import Settings
    from reviewops.sources.crawl import crawl

    home = tempfile.mkdtemp(prefix="reviewops-crawl-bench-")
    env = {"REVIEWOPS_HOME": home, "REVIEWOPS_CGV_BASE_URL": url, "REVIEWOPS_MEGABOX_BASE_URL": url,
           "REVIEWOPS_CRAWL_DELAY": str(delay), "REVIEWOPS_SELENIUM_FALLBACK": "false",
           "REVIEWOPS_CRAWL_MAX_PAGES": "1000"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        site.set_day(day)
        t = time.perf_counter()
        results = crawl(Settings())
        seconds = time.perf_counter() - t
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    new = sum(r.new for r in results)
    return {"delay": delay, "seconds": seconds, "new": new, "pages": sum(r.pages for r in results),
            "reviews_per_second": new / seconds, "status": [r.status for r in results]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reviews-per-day", type=int, default=60)
    args = ap.parse_args()
    from rich.console import Console
    from rich.table import Table

    from reviewops.devtools.testsite import TestSite

    corpus = SHARED if SHARED.exists() else None
    site = TestSite(corpus=corpus, movies_per_source=4, days=1, reviews_per_day=args.reviews_per_day)
    url = site.start()
    try:
        fast = run(site, url, 0.0, 0)
        polite = run(site, url, 1.0, 0)
        from reviewops.sources.browser import Browser

        code = site.movies("cgv")[0]["code"]
        with Browser() as browser:
            t = time.perf_counter()
            browser.render(f"{url}/movies/detail-view/?midx={code}", "#render-done")
            render_seconds = time.perf_counter() - t
    finally:
        site.stop()
    res = {"corpus": str(corpus or "bundled sample"), "delay_0": fast, "default_delay_1s": polite,
           "politeness_slowdown": fast["reviews_per_second"] / polite["reviews_per_second"],
           "selenium_render_seconds": render_seconds}
    out = ROOT / "bench" / "results" / f"crawl-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    table = Table(title="crawl bench (local test site, 4 movies per source)", title_justify="left")
    for col in ("setting", "reviews", "pages", "seconds", "reviews/s"):
        table.add_column(col, justify="right")
    for name, r in (("delay 0", fast), ("default (delay 1 s)", polite)):
        table.add_row(name, f"{r['new']:,}", str(r["pages"]), f"{r['seconds']:.1f}", f"{r['reviews_per_second']:,.1f}")
    Console().print(table)
    Console().print(f"politeness costs {res['politeness_slowdown']:.1f}× in throughput; one page rendered in "
                    f"headless Chromium: {render_seconds:.2f}s; written to {out}")


if __name__ == "__main__":
    main()
