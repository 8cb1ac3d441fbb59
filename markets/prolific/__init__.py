"""Recruiting on Prolific (the `prolific` command): publish, sync, pay, and a loopback fake.

client.py is the only module that talks to Prolific's REST API (httpx, token from the
environment); models.py types its JSON; publish, sync, review, bonus and studies are the
commands' logic over the study database; fake/ is a loopback stand-in for the part of
Prolific's API the command uses, with simulated participants, for tests and rehearsals.
The server's side (the study page with Prolific's URL parameters, the session binding, the
completion code) is `study_server.prolific_entry`.
"""
