"""Proxy annotators: estimate Table 2 before paying anyone, with classifiers never attacked.

defaults.py    k, ensemble members and epochs (torch-free: the CLI reads them at start-up)
knn.py         k nearest training digits in L2 pixel distance (the paper's criterion, literally)
augment.py     random shifts, rotations, scaling and elastic bends for training the ensemble
ensemble.py    independently trained FC and LeNet-5 members, cached on disk; mean softmax
annotators.py  the k-NN, the ensemble and its per-architecture halves, with clean accuracy
labeling.py    a bundle's stimuli labeled by each annotator, as rows of the label export

Keep this file free of imports: `advcritic` imports `model.proxy.defaults` when it builds
its parser, before torch is loaded.
"""
