"""A stand-in worker process for testing deploy/launch.sh: it only waits for a signal.

$PDSERVE_FAKE_EXIT_ROLE=prefill|decode: a worker whose --worker-id starts with it prints an error
and exits 3 at once. $PDSERVE_FAKE_IGNORE_TERM=1: SIGTERM is ignored (launch.sh must SIGKILL).
"""

import argparse
import signal
import sys
import os
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker-id", default="worker")
    args, _ = parser.parse_known_args()
    fail_role = os.environ.get("PDSERVE_FAKE_EXIT_ROLE")
    if fail_role and args.worker_id.startswith(fail_role):
        print(f"{args.worker_id}: fake failure: cannot load the model", file=sys.stderr)
        return 3
    if os.environ.get("PDSERVE_FAKE_IGNORE_TERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"{args.worker_id}: running", file=sys.stderr, flush=True)
    deadline = time.monotonic() + 600  # never outlive a broken test by long
    while time.monotonic() < deadline:
        time.sleep(0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
