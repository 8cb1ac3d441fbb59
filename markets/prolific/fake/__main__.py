"""`python -m markets.prolific.fake`: run the loopback Prolific stand-in for a rehearsal.

Point `prolific` and the study server at it with the printed `export` lines.
"""

from __future__ import annotations

import argparse

import uvicorn

from markets.prolific.fake.app import create_app
from markets.prolific.fake.state import FakeProlific


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m markets.prolific.fake", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--balance", default="10000.00", help="workspace balance (%(default)s)")
    parser.add_argument("--fee", default="0.333", help="service fee fraction (%(default)s)")
    args = parser.parse_args(argv)
    fake = FakeProlific(balance=args.balance, fee_fraction=args.fee)
    url = f"http://{args.host}:{args.port}"
    (token,) = fake.tokens
    print(f"fake Prolific API on {url} (not Prolific: nobody takes part, nothing is paid)")
    print(f"export ADVCRITIC_PROLIFIC_API_URL={url}")
    print(f"export ADVCRITIC_PROLIFIC_COMPLETION_URL={url}/submissions/complete")
    print(f"export ADVCRITIC_PROLIFIC_TOKEN={token}")
    print(f"export ADVCRITIC_PROLIFIC_WORKSPACE_ID={fake.workspace_id}")
    print(f"participants: POST {url}/_participant/start {{study_id, participant_id}}")
    uvicorn.run(create_app(fake), host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
