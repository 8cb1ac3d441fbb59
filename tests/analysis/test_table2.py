"""Which labels count, and how they become Table 2 rows (on hand-made label rows)."""

from __future__ import annotations

import pytest

from analysis.labels import AnalysisError, LabelRow, StudyInfo, StudyLabels
from analysis.table2 import choose_studies, compute_table2, exclusion_reason
from contract.names import canonical_network
from contract.paper import PAPER_TABLE2, paper_table2


def row(
    label: int,
    *,
    original: int = 1,
    target: int | None = 7,
    kind: str = "adversarial",
    source: str = "mturk",
    verification: str = "confirmed",
    worker: str = "W1",
    status: str = "submitted",
    assignment: int = 0,
) -> LabelRow:
    return LabelRow(
        "s", assignment, kind, original, target, label, source, worker, status, verification
    )


def study(rows, *, slug="s", defense="ours", network="fc") -> StudyLabels:
    return StudyLabels(
        StudyInfo(slug, defense, network, "mnist", tuple(str(i) for i in range(10))), tuple(rows)
    )


@pytest.mark.parametrize(
    ("label_row", "source", "counts"),
    [
        (row(7), "all", True),
        (row(7, verification="unverified"), "all", False),
        (row(7, verification="flagged"), "all", False),
        (row(7, status="active"), "all", False),
        (row(7, source="local", verification="invited"), "all", True),
        (row(7, source="local", verification="invited"), "mturk", False),
        (row(7, source="local", verification="not_applicable"), "all", False),  # uninvited
        (row(7), "local", False),
    ],
)
def test_only_confirmed_mturk_work_and_lab_work_count(label_row, source, counts):
    assert (exclusion_reason(label_row, source) is None) is counts


def test_change_no_change_other_with_per_class_and_catch_accuracy():
    rows = [
        row(7),
        row(7),
        row(1),
        row(3),
        row(4, original=4, target=9, worker="W2"),
        row(2, kind="catch", original=2, target=None),
        row(5, kind="catch", original=2, target=None),
        row(7, verification="flagged", worker="W3"),
    ]
    (result,) = compute_table2([study(rows)]).results
    o = result.outcomes
    assert (o.change.count, o.no_change.count, o.other.count, o.change.total) == (2, 2, 1, 5)
    assert o.change.percent == 40.0 and o.other.percent == 20.0
    assert [
        (c.name, c.outcomes.change.count, c.outcomes.change.total) for c in result.per_class
    ] == [("1", 2, 4), ("4", 0, 1)]
    assert (result.catch_accuracy.count, result.catch_accuracy.total) == (1, 2)
    assert result.annotators == 2 and result.excluded == {
        "MTurk submission flagged (not confirmed by MTurk, or rejected)": 1
    }
    assert (result.paper.change_pct, result.paper.no_change_pct) == (87.99, 9.86)


def test_an_attack_led_back_to_the_true_class_is_neither_change_nor_no_change():
    # The model misclassified a 1 and the attack's target is the true class 1: labelling it
    # "1" would count as change and no change at once, so the row is left out and reported.
    rows = [row(7), row(1, original=1, target=1), row(1)]
    (result,) = compute_table2([study(rows)]).results
    o = result.outcomes
    assert (o.change.count, o.no_change.count, o.other.count, o.change.total) == (1, 1, 0, 2)
    assert result.excluded == {"attack target is the true class (original misclassified)": 1}


def test_rows_are_one_per_defense_and_network_in_the_papers_order_and_pool_seeds():
    studies = [
        study([row(7)], slug="ours-fc-s1"),
        study([row(1)], slug="ours-fc-s0"),
        study([row(1)], slug="ref-lenet", defense="reference", network="lenet"),
        study([row(7)], slug="ref-fc", defense="reference"),
    ]
    table = compute_table2(studies)
    assert [(r.network, r.defense, r.studies) for r in table.results] == [
        ("fc", "reference", ("ref-fc",)),
        ("fc", "ours", ("ours-fc-s1", "ours-fc-s0")),
        ("lenet5", "reference", ("ref-lenet",)),
    ]
    assert table.results[1].outcomes.change.total == 2


def test_a_study_without_counted_labels_is_an_error_that_says_why():
    with pytest.raises(AnalysisError, match="2 MTurk submission not yet confirmed"):
        compute_table2(
            [study([row(7, verification="unverified"), row(1, verification="unverified")])]
        )
    with pytest.raises(AnalysisError, match="no labels stored yet"):
        compute_table2([study([])])
    table = compute_table2([study([row(7)]), study([], slug="e", defense="mm")], skip_empty=True)
    assert [r.defense for r in table.results] == ["ours"] and "mm/fc" in table.skipped


def test_choosing_studies():
    infos = [
        StudyInfo("ours-fc", "ours", "fc", "mnist", None),
        StudyInfo("ours-lenet", "ours", "lenet5", "mnist", None),
        StudyInfo("mm-fc", "mm", "fc", "mnist", None),
    ]
    assert [i.slug for i in choose_studies(infos, defense="ours")] == ["ours-fc", "ours-lenet"]
    assert [i.slug for i in choose_studies(infos, defense="ours", network="lenet")] == [
        "ours-lenet"
    ]
    assert [i.slug for i in choose_studies(infos, every=True, network="fc")] == ["ours-fc", "mm-fc"]
    with pytest.raises(AnalysisError, match="no study of defense 'vat'.*ours-fc \\(ours/fc\\)"):
        choose_studies(infos, defense="vat")
    with pytest.raises(AnalysisError, match="unknown network 'resnet'"):
        choose_studies(infos, defense="ours", network="resnet")
    with pytest.raises(AnalysisError, match="unknown study 'x'"):
        choose_studies(infos, slugs=["x"])
    with pytest.raises(AnalysisError, match="--defense ours"):
        choose_studies(infos)


def test_the_papers_table_2_as_printed():
    assert sum(len(rows) for rows in PAPER_TABLE2.values()) == 10
    assert (
        paper_table2("lenet-5", "mm").change_pct == 81.77
        and paper_table2("FC", "reference").no_change_pct == 98.74
    )
    assert paper_table2("fc", "ours").other_pct == 2.15
    assert paper_table2("vgg", "ours") is None and paper_table2("fc", "pgd") is None
    assert canonical_network("LeNet") == "lenet5"
    with pytest.raises(ValueError, match="unknown network 'vgg'"):
        canonical_network("vgg")
