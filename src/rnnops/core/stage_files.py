"""Names of files one stage writes and another reads, beside each stage's own outputs."""

# Written by train (the held-out validation scores, before any refit) and by ensemble (the
# mean of its members'); read by ensemble and evaluate (threshold tuning, selection).
VAL_SCORES = "val_scores.npy"
