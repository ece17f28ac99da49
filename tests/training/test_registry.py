"""Registration and promotion on a real tracking server, with small but real logged models.

Each candidate is what ``evaluate`` leaves behind: a run with ``data/test.parquet`` and a logged
ChurnPyfunc (tag ``wikichurn.model_uri``) whose meta carries the seed baseline's test score.
"""

from __future__ import annotations

import math
import uuid
from pathlib import Path
from typing import Any

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.utils.training import training_settings
from wikichurn.training.config import TrainingSettings
from wikichurn.training.metrics import metric_spec
from wikichurn.training.model import (
    as_categorical,
    category_mappings,
    log_churn_model,
    model_input_example,
    write_model_dir,
)
from wikichurn.training.register import decide_promotion, register_and_promote
from wikichurn.training.server import TrackingServer
from wikichurn.training.tracking import ROLE_SEED, TAG_MODEL_URI, configure_tracking

PR_AUC = metric_spec("pr_auc")


def synthetic(seed: int, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "signal": rng.normal(size=n),
            "noise": rng.normal(size=n),
            "domain_code": rng.choice(["en", "de", "fr"], n),
        }
    )
    frame["churn"] = ((frame["signal"] + 0.5 * rng.normal(size=n)) > 1.0).astype(int)
    return frame


TRAIN, TEST = synthetic(1, 600), synthetic(2, 300)


def log_candidate(cfg: TrainingSettings, folder: Path, *, informative: bool, baseline: float = 0.0) -> str:
    """A finished, evaluated training run: tiny LightGBM model (good or useless) + its test rows."""
    features = ["signal", "noise", "domain_code"] if informative else ["noise", "domain_code"]
    categories = category_mappings(TRAIN, ["domain_code"])
    booster = lgb.train(
        {"objective": "binary", "verbosity": -1, "num_leaves": 7, "seed": 3, "min_data_per_group": 5},
        lgb.Dataset(as_categorical(TRAIN[features], categories), TRAIN["churn"]),
        num_boost_round=20,
    )
    meta: dict[str, Any] = {
        "format_version": 1,
        "kind": "lightgbm",
        "features": features,
        "categories": categories,
        "threshold": 0.5,
        "baselines": {ROLE_SEED: {"test": {"pr_auc": baseline}}},
        "lineage": {"feature_table": "synthetic", "feature_table_version": None, "git_commit": None},
        "split": {},
    }
    experiment_id = configure_tracking(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    TEST.to_parquet(folder / "test.parquet")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_artifact(str(folder / "test.parquet"), "data")
        info = log_churn_model(write_model_dir(folder / "model", booster, meta), model_input_example(TEST, meta))
        mlflow.set_tag(TAG_MODEL_URI, info.model_uri)
    return run.info.run_id


@pytest.fixture
def cfg(mlflow_server: TrackingServer) -> TrainingSettings:
    """Settings with a model name of its own, so tests do not share aliases."""
    return training_settings(mlflow_server, experiment_name="registry", model_name=f"registry-{uuid.uuid4().hex[:8]}")


def test_worse_candidate_is_challenger_and_force_promotes(cfg: TrainingSettings, tmp_path: Path) -> None:
    client = MlflowClient(cfg.tracking_uri, registry_uri=cfg.tracking_uri)
    good = register_and_promote(cfg, log_candidate(cfg, tmp_path / "good", informative=True))
    assert good.promoted and good.alias == "production" and good.production_version is None

    bad_run = log_candidate(cfg, tmp_path / "bad", informative=False)
    bad = register_and_promote(cfg, bad_run)
    assert not bad.promoted and bad.alias == "challenger"
    assert "does not beat production" in bad.reason
    assert bad.production_version == good.version
    # The production model was re-scored on the candidate's test rows.
    assert bad.production_score == pytest.approx(good.candidate_score)
    assert client.get_model_version_by_alias(cfg.model_name, "production").version == good.version
    assert client.get_model_version_by_alias(cfg.model_name, "challenger").version == bad.version
    tags = client.get_model_version(cfg.model_name, bad.version).tags
    assert tags["wikichurn.promotion"] == "challenger"
    assert tags["wikichurn.compared_with_version"] == good.version
    assert client.get_run(bad_run).data.tags["wikichurn.promotion"] == "challenger"

    forced = register_and_promote(cfg, log_candidate(cfg, tmp_path / "forced", informative=False), force=True)
    assert forced.promoted and "forced" in forced.reason
    assert client.get_model_version_by_alias(cfg.model_name, "production").version == forced.version


def test_better_candidate_replaces_production(cfg: TrainingSettings, tmp_path: Path) -> None:
    client = MlflowClient(cfg.tracking_uri, registry_uri=cfg.tracking_uri)
    weak = register_and_promote(cfg, log_candidate(cfg, tmp_path / "weak", informative=False), force=True)
    strong = register_and_promote(cfg, log_candidate(cfg, tmp_path / "strong", informative=True))
    assert strong.promoted and "beats production" in strong.reason
    assert strong.production_version == weak.version
    assert client.get_model_version_by_alias(cfg.model_name, "production").version == strong.version


def test_candidate_must_beat_the_seed_baseline(cfg: TrainingSettings, tmp_path: Path) -> None:
    result = register_and_promote(cfg, log_candidate(cfg, tmp_path / "c", informative=True, baseline=0.999))
    assert not result.promoted and result.alias == "challenger"
    assert "seed-feature baseline" in result.reason


def test_unevaluated_run_cannot_be_registered(cfg: TrainingSettings) -> None:
    experiment_id = configure_tracking(cfg)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        pass
    with pytest.raises(ValueError, match="evaluate"):
        register_and_promote(cfg, run.info.run_id)


@pytest.mark.parametrize(
    ("candidate", "production", "baseline", "force", "promote", "reason"),
    [
        (0.60, None, 0.40, False, True, "no comparable production"),
        (0.60, 0.50, 0.40, False, True, "beats production"),
        (0.50, 0.50, 0.40, False, False, "does not beat production"),  # a tie is not a win
        (0.45, 0.50, 0.40, False, False, "does not beat production"),
        (0.45, 0.50, 0.40, True, True, "forced"),
        (0.35, None, 0.40, False, False, "seed-feature baseline"),
        (0.35, 0.10, 0.40, False, False, "seed-feature baseline"),
        (math.nan, None, 0.40, False, False, "undefined"),
    ],
)
def test_decide_promotion(
    candidate: float, production: float | None, baseline: float, force: bool, promote: bool, reason: str
) -> None:
    decision = decide_promotion(PR_AUC, candidate, production=production, baseline=baseline, force=force)
    assert decision.promote is promote
    assert reason in decision.reason


def test_decide_promotion_margin_and_direction() -> None:
    assert not decide_promotion(PR_AUC, 0.52, production=0.50, baseline=0.1, min_delta=0.05).promote
    assert decide_promotion(PR_AUC, 0.56, production=0.50, baseline=0.1, min_delta=0.05).promote
    log_loss = metric_spec("log_loss")  # lower is better
    assert decide_promotion(log_loss, 0.30, production=0.35, baseline=0.40).promote
    assert not decide_promotion(log_loss, 0.36, production=0.35, baseline=0.40).promote
