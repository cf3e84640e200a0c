"""Cold start in phases: the generated service against the hand-written one, one run each.

Both are started with `bentoml serve` on loopback (the same adapter verify uses) and measured the
way verify measures a release (toolkit/pipeline/verify.py, docs/service.md "Cold start"):
import (the server process's start, from /proc, until the worker that answers has imported its
service module), model load (until that worker's service class has its model), first answer
(until /readyz answered, then the first POST to /predict answered). The generated service writes
its marks itself (runtime/startup.py); the hand-written one (benchmarks/handwritten_service.py,
unchanged) is served through a small wrapper module, written to a temporary directory, that takes
the same marks around its import and its ``__init__``.

Target (issue #24, item 4): the generated service's total at most the hand-written one's (ratio
<= 1.0; one run on a shared machine is noisy, so a ratio up to 1.1 is reported as "about equal").

Run: .venv/bin/python benchmarks/coldstart.py [RELEASE_DIR]
     (without RELEASE_DIR the iris example is packaged first, in a temporary BENTOML_HOME)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from nb2prod.adapters import bento  # noqa: E402
from nb2prod.pipeline.verify import served_cold_start  # noqa: E402
from nb2prod.release.manifest import ColdStart  # noqa: E402
from nb2prod.release.reader import Release  # noqa: E402
from serve import FLOWERS, TOKEN, release_dir  # noqa: E402

# the hand-written service with the runtime's marks: imported after its module, loaded after
# its __init__, printed as the JSON line runtime/startup.py logs
WRAPPER = """\
import json

from handwritten_service import Handwritten
from nb2prod.runtime import startup

startup.imported()
_own_init = Handwritten.inner.__init__


def _timed_init(self):
    _own_init(self)
    print(json.dumps({"message": startup.MESSAGE, startup.FIELD: startup.marks_now()}), flush=True)


Handwritten.inner.__init__ = _timed_init
"""


def first_answer_s(url: str, headers: dict[str, str]) -> float:
    with httpx.Client(timeout=30.0, headers=headers) as client:
        sent = time.monotonic()
        response = client.post(url, json=FLOWERS[0])
        response.raise_for_status()
        return time.monotonic() - sent


def measure(
    target: str, route: str, headers: dict[str, str], env: dict[str, str], cwd: Path | None
) -> ColdStart:
    with bento.serve(target, env=env, working_dir=cwd) as server:
        cold = served_cold_start(server, first_answer_s(server.url + route, headers))
    if cold is None:
        raise SystemExit(f"{target}: no startup marks in the server's log")
    return cold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("release", nargs="?", help="a release directory (default: package iris)")
    args = parser.parse_args()
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    with release_dir(args.release) as release, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shutil.copyfile(
            ROOT / "benchmarks" / "handwritten_service.py", work / "handwritten_service.py"
        )
        (work / "handwritten_timed.py").write_text(WRAPPER, encoding="utf-8")
        tag = Release.open(release).bento_tag
        print("generated ...", flush=True)
        gen = measure(tag, "/v1/predict", {"Authorization": f"Bearer {TOKEN}"},
                      {"NB2PROD_API_TOKEN": TOKEN}, None)  # fmt: skip
        print("hand-written ...", flush=True)
        hand = measure("handwritten_timed:Handwritten", "/predict", {},
                       {"BENCH_RELEASE": str(release)}, work)  # fmt: skip
    print(f"\n{tag}: one run each (cpus: {os.cpu_count()}, load {os.getloadavg()[0]:.1f})\n")
    print(f"{'seconds':16}{'generated':>12}{'hand-written':>14}{'ratio':>8}")
    for label, key in (("import", "import_s"), ("model load", "model_load_s"),
                       ("first answer", "first_answer_s"), ("total", "total_s")):  # fmt: skip
        g, h = getattr(gen, key), getattr(hand, key)
        print(f"{label:16}{g:>12.2f}{h:>14.2f}{(g / h if h else float('inf')):>8.2f}")
    ratio = gen.total_s / hand.total_s
    verdict = "met" if ratio <= 1.0 else "about equal" if ratio <= 1.1 else "NOT met"
    print(f"\ntarget: generated total <= hand-written total: {ratio:.2f} ({verdict})")


if __name__ == "__main__":
    main()
