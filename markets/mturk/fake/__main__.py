"""`python -m markets.mturk.fake`: run the loopback MTurk stand-in for a local rehearsal of the study.

Point the `mturk` command at it with ADVCRITIC_MTURK_ENDPOINT_URL and the printed keys.
"""

from __future__ import annotations

import argparse
import sys

from markets.mturk.fake.http import FakeMTurkServer
from markets.mturk.fake.service import FakeMTurk


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m markets.mturk.fake", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--balance", default="10000.00", help="prepaid balance in USD (default %(default)s)"
    )
    args = parser.parse_args(argv)
    fake = FakeMTurk(balance=args.balance)
    server = FakeMTurkServer(fake, args.host, args.port)
    ((access_key, secret),) = fake.credentials.items()
    print(f"fake MTurk requester API on {server.url} (not MTurk: nothing is paid, nobody works)")
    print(f"  export ADVCRITIC_MTURK_ENDPOINT_URL={server.url}")
    print(f"  export AWS_ACCESS_KEY_ID={access_key} AWS_SECRET_ACCESS_KEY={secret}")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
