"""The paper's CIFAR-10 numbers, read off the paper's result figures, for side-by-side reports."""

# Config A (cifar10-paper): cumulative MMACs and top-1 % per exit.
ANYTIME_MMACS = [15.8, 31.3, 44.7, 50.4, 60.7, 63.7, 90.2, 94.9]
ANYTIME_ACC = [91.3, 91.95, 93.1, 93.15, 93.15, 93.35, 93.55, 93.7]

# Budgeted batch classification: average MMACs per image and top-1 % (envelope of three RANets).
BUDGETED_MMACS = [15, 17.5, 20, 25, 30, 35, 40, 50, 60]
BUDGETED_ACC = [92.0, 92.4, 92.9, 93.35, 93.6, 93.85, 94.05, 94.2, 94.2]
