"""Publishing and managing the human study on Amazon Mechanical Turk (the `mturk` command).

client.py is the only module that talks to MTurk (boto3, sandbox by default); publish, sync,
review and hits are the commands' logic over the study database; fake/ is a loopback
stand-in for MTurk's requester API used by the tests and for rehearsals.
"""
