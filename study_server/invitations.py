"""Lab invitations: the participant codes of the lab mode (`study-server invite SLUG --n 40`).

The lab mode has no MTurk to vouch for a person, so a code is the credential: minted here,
shown once (in the printed link), stored only as its SHA-256, good for one participation.
A code is 12 characters of Crockford's base32 (60 random bits) in three groups, e.g.
``K7QM-3XHD-9PRA``; typed by hand it is read case-insensitively, with or without the dashes,
and O/I/L read as 0/1/1. A participant is known to the study by a worker id derived from
the hash (``lab:`` and 16 hex digits), never by the code.

"Spent" is not stored: a code is spent once its participant's allocation is submitted (the
accept refuses it then), so a reload or a crashed browser resumes until the very end.

Codes minted for a study of an experiment belong to the experiment: the link opens that
study, and the code is good for any one study of the experiment. The person is then one
worker id across its studies, and the server refuses them a second study (allocation rule
8). Codes minted for a study before it joined an experiment stay good for that study only:
the server cannot tell that two such codes of two studies are one person, so a lab that
groups studies afterwards mints new codes for the experiment (`study-server experiment`
says how many old codes there are).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import and_, bindparam, or_, select
from sqlalchemy.orm import Session

from study_server.db.models import (
    Allocation,
    AllocationStatus,
    LabInvitation,
    Study,
    Worker,
    WorkerSource,
)
from study_server.db.rendered import Database
from study_server.db.session import begin_write
from study_server.db.store import find_study, record_event

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32: no I, L, O, U
CODE_GROUPS, GROUP_LENGTH = 3, 4
# What a code looks like on the wire and in the code form (checked before any lookup).
CODE_PATTERN = r"^[A-Za-z0-9 -]{4,64}$"
MAX_PER_RUN = 10_000
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})


@dataclass(frozen=True)
class LabInvite:
    id: int
    study_id: int
    code_sha256: str
    experiment_id: int | None = None

    @property
    def worker_id(self) -> str:
        return f"lab:{self.code_sha256[:16]}"

    def opens(self, study_id: int, experiment_id: int | None) -> bool:
        """Whether the code is good for this study: its own, or one of its experiment's."""
        return study_id == self.study_id or (
            self.experiment_id is not None and experiment_id == self.experiment_id
        )


def normalize(code: str) -> str:
    """The code as it is hashed: upper case, no dashes or spaces, O/I/L read as 0/1/1."""
    return re.sub(r"[\s-]", "", code).upper().translate(_READ_AS)


def code_sha256(code: str) -> str:
    return hashlib.sha256(normalize(code).encode()).hexdigest()


def new_code() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(CODE_GROUPS * GROUP_LENGTH))
    return "-".join(raw[i : i + GROUP_LENGTH] for i in range(0, len(raw), GROUP_LENGTH))


def mint(session: Session, *, study_slug: str, n: int, note: str | None = None) -> list[str]:
    """`n` new codes for the study, stored hashed in one transaction; the codes themselves
    exist only in the returned list."""
    if not 1 <= n <= MAX_PER_RUN:
        raise ValueError(f"--n must be between 1 and {MAX_PER_RUN}, got {n}")
    begin_write(session)
    study = find_study(session, study_slug, list_known=True)
    codes = [new_code() for _ in range(n)]
    session.add_all(
        LabInvitation(
            study_id=study.id,
            experiment_id=study.experiment_id,
            code_sha256=code_sha256(code),
            note=note,
        )
        for code in codes
    )
    detail = {"n": n, "note": note, "experiment_id": study.experiment_id}
    record_event(session, kind="lab_invited", study_id=study.id, detail=detail)
    session.commit()
    return codes


def find_invite(session: Database, code: str) -> LabInvite | None:
    """The invitation a code names, of any study (the caller checks which), or None."""
    row = session.execute(_INVITE, {"code_sha256": code_sha256(code)}).first()
    return None if row is None else LabInvite(*row)


_INVITE = select(
    LabInvitation.id, LabInvitation.study_id, LabInvitation.code_sha256, LabInvitation.experiment_id
).where(LabInvitation.code_sha256 == bindparam("code_sha256"))


def is_spent(session: Session, invite: LabInvite) -> bool:
    """Whether the code's participant has submitted, in any study the code opens (then it
    opens nothing any more)."""
    studies = select(Study.id).where(
        or_(
            Study.id == invite.study_id,
            and_(Study.experiment_id.is_not(None), Study.experiment_id == invite.experiment_id),
        )
    )
    submitted = session.scalar(
        select(Allocation.id)
        .join(Worker, Worker.id == Allocation.worker_id)
        .where(
            Allocation.study_id.in_(studies),
            Allocation.status == AllocationStatus.submitted,
            Worker.source == WorkerSource.local,
            Worker.external_id == invite.worker_id,
        )
        .limit(1)
    )
    return submitted is not None
