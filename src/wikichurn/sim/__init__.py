"""The simulated dumps site (a tool for demos, tests and benchmarks, not part of the data path)."""
