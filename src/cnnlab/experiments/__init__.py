"""Experiments that train: each trains several runs under one folder and compares them.

- `backdoor.py`: BadNets poisoning at several rates, clean accuracy and attack success.
- `label_noise.py`: flipped labels found again by TracIn self-influence and by loss.
- `mlp_vs_cnn.py`: parameter counts and the fixed pixel-permutation test.

One overwrite rule for all: an experiment writes only into its own `--out` folder and replaces
the runs it made there before; a folder that is not an experiment's is never deleted.
"""
