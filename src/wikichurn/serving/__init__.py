"""The scoring service: FastAPI ``POST /score`` on the registry's production model, without Spark."""
