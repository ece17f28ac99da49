"""In-process timing of ``score_instances`` (no HTTP): both request forms, batches of 1, 10 and 100.

Request parsing (``ScoreRequest.model_validate_json``) and scoring are timed separately. Run it
from a source tree's root, or point it at another tree (e.g. an older commit exported with
``git archive``) to compare before and after on one machine load:

    python benchmarks/bench_score_inprocess.py [TREE]
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from tests.utils.serving import feature_frame, synthetic_histories, train_model, write_snapshot  # noqa: E402
from wikichurn.core.settings import ChurnSettings  # noqa: E402
from wikichurn.serving.registry import ModelRef, build_loaded_model  # noqa: E402
from wikichurn.serving.schemas import ScoreRequest  # noqa: E402
from wikichurn.serving.scoring import ServingState, score_instances  # noqa: E402
from wikichurn.serving.snapshot import load_snapshot  # noqa: E402
from wikichurn.training.model import ChurnScorer  # noqa: E402


def main() -> None:
    histories = synthetic_histories(n_domains=60, seed=5)
    booster, meta = train_model(feature_frame(histories), seed=1, rounds=200)
    model = build_loaded_model(
        ModelRef("m", "production", "1"), ChurnScorer(booster, meta, num_threads=1), ChurnSettings()
    )
    snapshot_path = Path(tempfile.mkdtemp()) / "snapshot.parquet"
    write_snapshot(snapshot_path, histories)
    state = ServingState(model=model, snapshot=load_snapshot(snapshot_path))
    codes = list(state.snapshot.rows) if state.snapshot else []
    payload = {c: [{"date": d.isoformat(), "views": v} for d, v in histories[c].items()] for c in codes}
    for form in ("a", "b"):
        for n in (1, 10, 100):
            pick = [codes[i % len(codes)] for i in range(n)]
            instances = [{"domain_code": c, **({"daily_views": payload[c]} if form == "b" else {})} for c in pick]
            raw = json.dumps({"instances": instances})
            parse, score = [], []
            for _ in range(max(20, (2000 if form == "a" else 300) // n)):
                t0 = time.perf_counter()
                request = ScoreRequest.model_validate_json(raw)
                t1 = time.perf_counter()
                score_instances(state, request.instances)
                parse.append((t1 - t0) * 1e3)
                score.append((time.perf_counter() - t1) * 1e3)
            score.sort()
            p99 = score[max(0, int(len(score) * 0.99) - 1)]
            print(
                f"form {form}, {n:3d} instance(s): parse {statistics.median(parse):.3f} ms, "
                f"score p50 {statistics.median(score):.3f} ms, p99 {p99:.3f} ms"
            )


if __name__ == "__main__":
    main()
