"""RANet training, evaluation, calibration and export for Cascade."""
