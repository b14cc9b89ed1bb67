"""Multi-object tracking: SORT and its appearance variant, MOTChallenge files, CLEAR-MOT and IDF1."""
