"""A loopback stand-in for the part of Prolific's API the `prolific` command uses.

It is not Prolific: nobody takes part and nothing is paid. It speaks the same JSON (field
names, money in minor units, paged lists, error shapes), checks the token, keeps a
workspace's balance, and plays the participants' side: a simulated participant starts a
submission (getting the study URL with PROLIFIC_PID, STUDY_ID and SESSION_ID), goes through
the live study server, and ends at the completion URL with the code.

    python -m markets.prolific.fake --port 8766    # prints the settings that point `prolific` at it
"""

from markets.prolific.fake.app import PARTICIPANT_COOKIE, create_app
from markets.prolific.fake.state import FakeError, FakeProlific

__all__ = ["PARTICIPANT_COOKIE", "FakeError", "FakeProlific", "create_app"]
