"""``celery`` for the fault tests, with one optional slow-down so a test can catch a training
run in the middle: FAULTS_SLOW_FIT_SECONDS > 0 makes each trending fit sleep that long first.

Run as ``python tests/faults/worker_main.py -A recsite worker ...`` (same arguments as celery).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    delay = float(os.environ.get("FAULTS_SLOW_FIT_SECONDS") or 0)
    if delay > 0:
        from personalization import recommenders

        original = recommenders.trending_fit

        def slow_fit(*args, **kwargs):
            time.sleep(delay)
            return original(*args, **kwargs)

        recommenders.trending_fit = slow_fit
    from celery.__main__ import main as celery_main

    sys.argv = ["celery", *sys.argv[1:]]
    celery_main()


if __name__ == "__main__":
    main()
