"""One place per external system: MLflow (``tracking``), DVC (``dvc_driver``), file locks, the store probe."""
