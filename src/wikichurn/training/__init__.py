"""Training as an MLflow project: LightGBM + Optuna, baselines, evaluation, registry promotion."""
