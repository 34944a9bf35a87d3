"""Pure cores: typed params, text, networks, the decision rule, the predictor, atomic files.

No files beyond the atomic-write helpers, no network, no MLflow, DVC or Prefect."""
