"""The names `prolific` gives things on Prolific, derived from the study, never from the clock.

A rerun after a crash must recognise what an earlier run made: the Prolific study by its
internal name (from the study's manifest hash), the exclusion group by its name. The
completion code is random (it must not be guessable from the study), and stored.
"""

from __future__ import annotations

import secrets

from study_server.db.models import Study

INTERNAL_NAME_PREFIX = "advcritic"


def internal_name(study: Study) -> str:
    """The Prolific study's internal name (not shown to participants): unique per bundle."""
    return f"{INTERNAL_NAME_PREFIX} {study.slug} {study.manifest_sha256[:16]}"


def exclusion_group_name(study: Study) -> str:
    """The participant group of everyone who took part; the study blocklists it.

    The studies of an experiment (study_server/experiments.py) share one group, named after
    the experiment (its random key, since two databases may reuse a slug); a study alone has
    its own. Reads `study.experiment`: call it inside the study's session."""
    experiment = study.experiment
    if experiment is not None:
        return (
            f"{INTERNAL_NAME_PREFIX} experiment {experiment.slug} {experiment.key[:12]} "
            "participants"
        )
    return f"{INTERNAL_NAME_PREFIX} {study.slug} {study.manifest_sha256[:12]} participants"


def new_completion_code() -> str:
    """A fresh code (8 upper-case hexadecimal characters), shown only after stored labels."""
    return secrets.token_hex(4).upper()
