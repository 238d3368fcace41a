"""The batch detection job's functions (``infrastructure/batch.py``): prepare, detect, merge, finish."""
