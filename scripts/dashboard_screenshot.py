"""Write the README's dashboard screenshot: the example router behind a gateway on loopback, a scripted load
(every example query in 8 waves, client feedback on half of the answers, shadow verdicts on a quarter), then
``GET /dashboard`` in headless Chromium.

    python scripts/dashboard_screenshot.py --out docs/dashboard.png

Needs the ``server`` and ``dev`` extras (Playwright) and Debian's ``chromium`` (``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(
    0, str(Path(__file__).resolve().parents[1] / "tests")
)  # the scripted load lives with the tests
from browser import browse  # noqa: E402
from traffic import ADMIN_KEY, demo_gateway, example_traffic  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/dashboard.png"))
    args = parser.parse_args()
    folder = tempfile.TemporaryDirectory()
    with folder, demo_gateway(Path(folder.name), dashboard_interval_s=0.5) as gateway:
        chosen = example_traffic(gateway.url, pause_every=8, pause_s=0.6)  # 8 points on the time axis
        deadline = time.monotonic() + 60  # shadow verdicts are judged in the background
        while "\ntagrouter_shadow_judged_total{" not in httpx.get(gateway.url + "/metrics").text:
            if time.monotonic() > deadline:
                sys.exit("no shadow verdict within 60 s")
            time.sleep(0.2)
        with browse(gateway.url + "/dashboard", {"authorization": f"Bearer {ADMIN_KEY}"}) as visit:
            if visit.errors:
                sys.exit(f"the dashboard had errors: {visit.errors}")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            visit.page.screenshot(path=str(args.out), full_page=True)
    counts = {m: chosen.count(m) for m in dict.fromkeys(chosen)}
    print(f"wrote {args.out} after {len(chosen)} requests ({counts})")


if __name__ == "__main__":
    main()
