"""Inside the CNN (issue #3): the convolution worked by hand, MLP vs CNN, filters and feature maps.

- `conv.py`: the lecture's worked example and any other convolution, cell by cell.
- `permutation.py`: MLP vs CNN, parameter counts and the fixed pixel-permutation test.
- `pictures.py`: a trained run's first-layer filters and every conv layer's feature maps.
- `figures.py`: their pictures (matplotlib, PNG).
- `runs.py`: filters and feature maps of a trained run, saved in the run.
- `report.py`: the report section that shows them.
"""
