"""Human-study stimuli: adversarial images of a whole test split, as a verified bundle.

bundle.py    the on-disk format shared with the study server (no PyTorch: keep this
             package's __init__ free of imports so the server can load bundle.py alone)
attack.py    the Table 2 protocol on top of model.attacks (target, C, settings)
pool.py      continuous batching of the attack over a whole split
protocol.py  8-bit storage, rounding repair, re-check
outcome.py   what the model says about the stored images (the manifest's numbers)
records.py   manifest rows and PNG bytes
catch.py     catch trials (clean images with known labels)
generate.py  the pipeline behind `advcritic stimuli`
figures.py, grids.py   the paper's Figure 2 and Figure 4
"""
