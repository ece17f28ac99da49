"""Training settings: conf/training.yaml, WIKICHURN_TRAINING__* variables, keyword overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from wikichurn.training.config import TrainingSettings, load_training_settings

REPO = Path(__file__).resolve().parents[2]


def test_committed_yaml_matches_the_defaults() -> None:
    data = yaml.safe_load((REPO / "conf" / "training.yaml").read_text())["training"]
    assert TrainingSettings.model_validate(data) == TrainingSettings()


def test_environment_overrides_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WIKICHURN_TRAINING__TUNING__TRIALS", "4")
    monkeypatch.setenv("WIKICHURN_TRAINING__PROMOTION__METRIC", "roc_auc")
    cfg = load_training_settings()
    assert cfg.tuning.trials == 4
    assert cfg.promotion.metric == "roc_auc"
    assert cfg.tuning.metric == "pr_auc"  # untouched keys keep the YAML value


def test_keyword_overrides_merge_nested_sections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WIKICHURN_TRAINING__TUNING__TIMEOUT_S", "60")
    cfg = load_training_settings(tuning={"trials": 2}, model_name="other")
    assert cfg.tuning.trials == 2 and cfg.tuning.timeout_s == 60
    assert cfg.model_name == "other"


def test_conf_dir_overlay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "training.yaml").write_text("training:\n  seed: 1\n  split: {gap_days: 10}\n")
    (tmp_path / "local.yaml").write_text("training:\n  seed: 2\n")
    monkeypatch.setenv("WIKICHURN_CONF_DIR", str(tmp_path))
    cfg = load_training_settings()
    assert cfg.seed == 2 and cfg.split.gap_days == 10


def test_invalid_values_are_refused() -> None:
    with pytest.raises(ValueError):
        load_training_settings(tuning={"metric": "accuracy"})
    with pytest.raises(ValueError):
        load_training_settings(split={"train_end": "2024-01-31"})  # validation_end missing
