"""Table 1: evaluate checkpoints of several seeds, aggregate, write Markdown and CSV.

    from model.table1 import EVALUATION_PRESETS, evaluate_checkpoint, build_rows
    evaluation = evaluate_checkpoint("runs/ours-fc-s0/checkpoint.pt", EVALUATION_PRESETS["cpu"],
                                     load_test_split=test_split_loader())

`advcritic table1` is the command-line front end.
"""

from model.table1.presets import EVALUATION_PRESETS, EvaluationPreset
from model.table1.results import (
    ATTACK_COLUMNS,
    RHO_POLICIES,
    AttackSummary,
    CheckpointEvaluation,
)
from model.table1.runner import (
    CheckpointInfo,
    describe_checkpoints,
    evaluate_checkpoint,
    find_checkpoints,
    test_split_loader,
)
from model.table1.table import (
    Statistic,
    TableRow,
    build_rows,
    csv_text,
    markdown_document,
    markdown_table,
    ordering_report,
    ratio_table,
)

__all__ = [
    "ATTACK_COLUMNS",
    "EVALUATION_PRESETS",
    "RHO_POLICIES",
    "AttackSummary",
    "CheckpointEvaluation",
    "CheckpointInfo",
    "EvaluationPreset",
    "Statistic",
    "TableRow",
    "build_rows",
    "csv_text",
    "describe_checkpoints",
    "evaluate_checkpoint",
    "find_checkpoints",
    "markdown_document",
    "markdown_table",
    "ordering_report",
    "ratio_table",
    "test_split_loader",
]
