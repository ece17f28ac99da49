"""Model benchmark: the forward backtest on real daily totals and on a simulated year.

    python benchmarks/bench_model.py --trials 15 --windows 6            # -> docs/benchmarks-model.json
    python benchmarks/bench_model.py --only real                        # one side only

Real: the vendored `benchmarks/data/real/` (16 wikis, 2013-06..2015-06) replayed into a mirror,
ingested, through the pipeline, trained at the last 6 monthly cut-offs (`wikichurn.training.backtest`).
Simulated: `simulate` 2024-01-01..2024-12-31, 150 domains, seed 0, same backtest. MLflow: a local
sqlite store under the work folder unless MLFLOW_TRACKING_URI is set.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=15)
    parser.add_argument("--windows", type=int, default=6)
    parser.add_argument("--only", choices=("real", "simulated"), default=None)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-model.json")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="wikichurn-bench-model-"))
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{work / 'mlflow.db'}")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    from wikichurn.training.backtest import backtest_daily, backtest_simulated
    from wikichurn.training.config import load_training_settings

    cfg = load_training_settings(experiment_name="wikichurn-backtest", tuning={"trials": args.trials})
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if args.only in (None, "real"):
        real = backtest_daily(ROOT / "benchmarks" / "data" / "real", work / "real", cfg, windows=args.windows)
        results["real"] = real.summary() | {"trials": args.trials}
        print(real.table().round(4).to_string(index=False))
    if args.only in (None, "simulated"):
        sim = backtest_simulated(
            work / "simulated", cfg, start=date(2024, 1, 1), end=date(2024, 12, 31), windows=args.windows
        )
        results["simulated"] = sim.summary() | {"trials": args.trials}
        print(sim.table().round(4).to_string(index=False))
    args.out.write_text(json.dumps(results, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
