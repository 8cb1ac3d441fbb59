"""What every part of the platform agrees on, free of PyTorch and of any server code.

    bundle   the stimulus bundle: the folder `advcritic stimuli` writes and the study server
             imports (format, version, manifest rows, verification)
    names    the defenses and networks by their canonical names, with titles and aliases
    paper    the paper's Table 1 and Table 2, the numbers every comparison is made against
    labels   the columns of a label export, read by the analysis from any source
    cli      the exit-status conventions every command follows

`model`, `study_server`, `markets`, `analysis` and `pipeline` import it; it imports none of
them, so the server image and the analysis install without the training side.
"""
