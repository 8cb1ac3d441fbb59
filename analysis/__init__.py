"""`analyze-study`: the paper's Table 2 from the labels people gave.

labels.py reads them (database or export), table2.py decides which count and computes the
shares, stats.py the Wilson intervals, paper.py holds the paper's numbers, report.py and
plot.py present the result.
"""
