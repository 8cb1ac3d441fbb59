"""A loopback stand-in for MTurk's requester service, for tests and local rehearsals.

It is not MTurk. It speaks MTurk's wire protocol (JSON 1.1 over HTTP, ``X-Amz-Target:
MTurkRequesterServiceV20170117.<Operation>``, SigV4-signed requests, AWS-style error bodies)
so that the real boto3 client, pointed at it with ``endpoint_url``, exercises the same code
paths as against the sandbox. It also plays the worker site: a simulated worker can accept a
HIT (getting the ExternalQuestion URL with ``assignmentId``/``hitId``/``workerId``/
``turkSubmitTo`` appended) and post the finished work to ``/mturk/externalSubmit``.

    python -m markets.mturk.fake --port 8765      # then ADVCRITIC_MTURK_ENDPOINT_URL=http://127.0.0.1:8765
"""

from markets.mturk.fake.http import FakeMTurkServer, serve_fake_mturk
from markets.mturk.fake.service import FakeMTurk, Fault, WorkerProfile

__all__ = ["FakeMTurk", "FakeMTurkServer", "Fault", "WorkerProfile", "serve_fake_mturk"]
