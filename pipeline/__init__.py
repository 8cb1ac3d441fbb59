"""What drives several parts at once: the quickstart (dataset -> model -> bundle -> study ->
labeling page) and the other commands that cross the parts' borders. Nothing below imports
it; it may import every part.
"""
