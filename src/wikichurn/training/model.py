"""The churn model as shipped: a LightGBM booster, its category mappings, feature list and threshold.

Two ways to use one model directory (``booster.txt`` + ``model_meta.json``):

- :class:`ChurnScorer`: plain Python, for the serving hot path. ``ChurnScorer.from_dir(path)``
  loads the two files; :meth:`ChurnScorer.predict_proba` scores a pandas DataFrame, a numpy
  matrix already in :attr:`ChurnScorer.features` order, or a list of dicts.
- :class:`ChurnPyfunc`: the ``mlflow.pyfunc.PythonModel`` logged to MLflow, a thin shell around
  :class:`ChurnScorer` (input: feature rows; output: ``risk_score`` and ``churn``).

This module imports neither Spark nor the rest of ``training``: serving imports it.

``model_meta.json`` (``format_version`` 1)::

    {
      "format_version": 1,
      "kind": "lightgbm",                  # or "heuristic" for the no-learning baseline
      "features": ["count_views", ...],    # column order of the booster
      "categorical_features": ["domain_code", "language", "project_family", "access"],
      "categories": {"domain_code": ["aa", "ab", ...], ...},  # code = index; unseen -> missing
      "threshold": 0.41,                   # churn = risk_score >= threshold
      "threshold_objective": "f1",
      "best_iteration": 87, "params": {...},
      "label": {"horizon_days": 7, "window_days": 3, "factor": 0.3},
      "split": {"train": {"start": "...", "end": "...", "rows": 0, "positive_rate": 0.1}, ...},
      "metrics": {"validation": {...}, "test": {...}},
      "baselines": {"baseline_seed_features": {"test": {...}}, "baseline_heuristic": {"test": {...}}},
      "lineage": {"feature_table": "...", "feature_table_version": 12, "git_commit": "..."},
      "run_id": "..."
    }
"""

from __future__ import annotations

import json
import math
import shutil
import threading
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import lightgbm as lgb
import mlflow.pyfunc
import numpy as np
import pandas as pd

from wikichurn.training.onerow import SingleRowPredictor

BOOSTER_FILE = "booster.txt"
META_FILE = "model_meta.json"
META_FORMAT_VERSION = 1
OUTPUT_COLUMNS: tuple[str, str] = ("risk_score", "churn")


def category_mappings(frame: pd.DataFrame, columns: Sequence[str]) -> dict[str, list[str]]:
    """Sorted distinct non-null values of each categorical column (the code of a value is its index)."""
    return {col: sorted({str(v) for v in frame[col].dropna().unique()}) for col in columns}


def as_categorical(frame: pd.DataFrame, categories: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """A copy of ``frame`` whose categorical columns are pandas ``category`` with exactly these levels.

    Values outside a mapping become missing, as :class:`ChurnScorer` treats them, so LightGBM's
    own pandas handling and :meth:`ChurnScorer.encode` give the same codes.
    """
    out = frame.copy()
    for col, levels in categories.items():
        out[col] = pd.Categorical(out[col].astype("object").where(out[col].notna(), None), categories=list(levels))
    return out


class ChurnScorer:
    """A trained booster plus everything needed to turn feature rows into risk scores.

    Args:
        booster: the LightGBM booster (its feature order must be ``meta["features"]``).
        meta: the model metadata (see the module docstring).
        num_threads: LightGBM prediction threads (1 is fastest for a handful of rows).
    """

    def __init__(self, booster: lgb.Booster, meta: Mapping[str, Any], *, num_threads: int = 0) -> None:
        self.booster = booster
        self.meta: dict[str, Any] = dict(meta)
        self.features: list[str] = list(meta["features"])
        self.threshold: float = float(meta["threshold"])
        self.categories: dict[str, list[str]] = {k: list(v) for k, v in meta.get("categories", {}).items()}
        self._index = {
            col: {value: float(i) for i, value in enumerate(levels)} for col, levels in self.categories.items()
        }
        self._position = {name: i for i, name in enumerate(self.features)}
        self._numeric = [name for name in self.features if name not in self._index]
        self._numeric_positions = [self._position[name] for name in self._numeric]
        self._predict_kwargs: dict[str, Any] = {"num_threads": num_threads} if num_threads else {}
        self._one_row: dict[str, SingleRowPredictor] = {}  # made on first use (see _single_row)
        self._one_row_lock = threading.Lock()
        if booster.feature_name() != self.features:
            raise ValueError("booster feature order differs from meta['features']")

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def from_dir(cls, path: str | Path, *, num_threads: int = 0) -> ChurnScorer:
        """Load from a folder holding ``booster.txt`` and ``model_meta.json``.

        ``path`` may also be a downloaded MLflow model folder (the files are then under
        ``artifacts/``) or any folder that contains exactly one such pair below it.
        """
        booster_path, meta_path = find_model_files(path)
        return cls.from_files(booster_path, meta_path, num_threads=num_threads)

    @classmethod
    def from_files(cls, booster_path: str | Path, meta_path: str | Path, *, num_threads: int = 0) -> ChurnScorer:
        """Load from the two files."""
        meta = json.loads(Path(meta_path).read_text())
        return cls(lgb.Booster(model_file=str(booster_path)), meta, num_threads=num_threads)

    def save(self, folder: str | Path) -> Path:
        """Write ``booster.txt`` and ``model_meta.json`` into ``folder`` (created if needed)."""
        return write_model_dir(folder, self.booster, self.meta)

    # -- scoring ---------------------------------------------------------------------------

    def encode(self, data: pd.DataFrame | np.ndarray | Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The float64 matrix the booster reads: features in order, categories as codes (NaN = unknown).

        A numpy array is taken as already encoded (``features`` order, category codes).
        """
        if isinstance(data, np.ndarray):
            matrix = np.asarray(data, dtype="float64")
            if matrix.ndim == 1:
                matrix = matrix.reshape(1, -1)
            if matrix.shape[1] != len(self.features):
                raise ValueError(f"expected {len(self.features)} columns, got {matrix.shape[1]}")
            return matrix
        if isinstance(data, pd.DataFrame):
            return self._encode_frame(data)
        return self.encode_records(data)

    def _encode_frame(self, frame: pd.DataFrame) -> np.ndarray:
        missing = [c for c in self.features if c not in frame.columns]
        if missing:
            raise KeyError(f"missing feature columns: {missing}")
        n = len(frame)
        matrix = np.empty((n, len(self.features)), dtype="float64")
        # Column by column and plain dict look-ups: cheap for one row, linear for many.
        for col, j in zip(self._numeric, self._numeric_positions, strict=True):
            matrix[:, j] = frame[col].to_numpy(dtype="float64", na_value=np.nan)
        for col, mapping in self._index.items():
            values = frame[col].tolist()
            matrix[:, self._position[col]] = np.fromiter((mapping.get(v, np.nan) for v in values), "float64", n)
        return matrix

    def encode_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Encode dicts (feature name -> value) without pandas: the fast path for a few rows."""
        matrix = np.full((len(records), len(self.features)), np.nan, dtype="float64")
        for i, record in enumerate(records):
            missing = [c for c in self.features if c not in record]
            if missing:
                raise KeyError(f"record {i}: missing feature columns: {missing}")
            for col, j in self._position.items():
                value = record[col]
                if col in self._index:
                    matrix[i, j] = self._index[col].get(str(value), np.nan) if value is not None else np.nan
                elif value is not None:
                    matrix[i, j] = float(value)
        return matrix

    def encode_columns(self, columns: Mapping[str, Any], rows: int) -> np.ndarray:
        """Encode whole columns (feature name -> array of ``rows`` values): the vectorised path."""
        matrix = np.empty((rows, len(self.features)), dtype="float64")
        # One copy for every numeric column (a per-column loop costs ~0.5 us a column on one row).
        matrix[:, self._numeric_positions] = np.array([columns[col] for col in self._numeric], dtype="float64").T
        for col, mapping in self._index.items():
            values = columns[col]
            matrix[:, self._position[col]] = np.fromiter(
                (mapping.get(str(v), np.nan) if v is not None else np.nan for v in values), "float64", rows
            )
        return matrix

    def predict_proba(self, data: pd.DataFrame | np.ndarray | Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Churn probability (risk score in [0, 1]) per row."""
        matrix = self.encode(data)
        if matrix.shape[0] == 0:
            return np.empty(0, dtype="float64")
        if matrix.shape[0] == 1:  # a one-instance request: LightGBM's single-row C path, ~6x faster
            return self._single_row("normal").predict(matrix[0])
        return np.asarray(self.booster.predict(matrix, **self._predict_kwargs), dtype="float64")

    def contribution_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """``pred_contrib`` of an encoded matrix: ``(rows, features + 1)``, the bias last."""
        if matrix.shape[0] == 1:
            return self._single_row("contrib").predict(matrix[0]).reshape(1, -1)
        values = self.booster.predict(matrix, pred_contrib=True, **self._predict_kwargs)
        return np.asarray(values, dtype="float64").reshape(matrix.shape[0], len(self.features) + 1)

    def _single_row(self, kind: Literal["normal", "contrib"]) -> SingleRowPredictor:
        predictor = self._one_row.get(kind)
        if predictor is None:
            with self._one_row_lock:
                predictor = self._one_row.get(kind) or SingleRowPredictor(self.booster, kind)
                self._one_row[kind] = predictor
        return predictor

    def predict(self, data: pd.DataFrame | np.ndarray | Sequence[Mapping[str, Any]]) -> pd.DataFrame:
        """``risk_score`` (probability) and ``churn`` (1 when ``risk_score >= threshold``) per row."""
        scores = self.predict_proba(data)
        index = data.index if isinstance(data, pd.DataFrame) else None
        return pd.DataFrame(
            {"risk_score": scores, "churn": (scores >= self.threshold).astype("int64")},
            index=index,
        )

    def contributions(self, data: pd.DataFrame | np.ndarray | Sequence[Mapping[str, Any]]) -> pd.DataFrame:
        """Per-feature contributions (LightGBM ``pred_contrib``, SHAP values in log-odds) per row.

        Columns are the features plus ``expected_value`` (the bias); each row sums to the
        log-odds of its risk score.
        """
        values = self.contribution_matrix(self.encode(data))
        index = data.index if isinstance(data, pd.DataFrame) else None
        return pd.DataFrame(values, columns=[*self.features, "expected_value"], index=index)


def write_model_dir(folder: str | Path, booster: lgb.Booster, meta: Mapping[str, Any]) -> Path:
    """Write ``booster.txt`` (LightGBM text model) and ``model_meta.json`` into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(folder / BOOSTER_FILE))
    write_meta(folder / META_FILE, meta)
    return folder


def write_meta(path: str | Path, meta: Mapping[str, Any]) -> Path:
    """Write model metadata as JSON (NaN written as null)."""
    path = Path(path)
    path.write_text(json.dumps(json_safe(dict(meta)), indent=2, sort_keys=False) + "\n")
    return path


def read_meta(path: str | Path) -> dict[str, Any]:
    """Read ``model_meta.json`` from a file or from a model folder."""
    path = Path(path)
    if path.is_dir():
        _booster, path = find_model_files(path, need_booster=False)
    meta: dict[str, Any] = json.loads(path.read_text())
    return meta


def find_model_files(path: str | Path, *, need_booster: bool = True) -> tuple[Path, Path]:
    """``(booster.txt, model_meta.json)`` in ``path``, its ``artifacts/`` folder, or the one pair below it."""
    root = Path(path)
    for folder in (root, root / "artifacts"):
        if (folder / META_FILE).is_file() and (not need_booster or (folder / BOOSTER_FILE).is_file()):
            return folder / BOOSTER_FILE, folder / META_FILE
    metas = [p for p in root.rglob(META_FILE) if not need_booster or (p.parent / BOOSTER_FILE).is_file()]
    if len(metas) != 1:
        raise FileNotFoundError(f"expected one {BOOSTER_FILE} + {META_FILE} pair under {root}, found {len(metas)}")
    return metas[0].parent / BOOSTER_FILE, metas[0]


def json_safe(value: Any) -> Any:
    """``value`` with numpy scalars as Python ones, NaN as None and dates as ISO strings."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


# -- MLflow ---------------------------------------------------------------------------------


class ChurnPyfunc(mlflow.pyfunc.PythonModel):  # type: ignore[name-defined]
    """The MLflow pyfunc form of :class:`ChurnScorer`.

    Artifacts: ``booster`` (``booster.txt``) and ``meta`` (``model_meta.json``). Input: a
    DataFrame with the model's feature columns (categories as strings; extra columns ignored).
    Output: a DataFrame with ``risk_score`` (float in [0, 1]) and ``churn`` (0/1).
    """

    def load_context(self, context: Any) -> None:
        self._scorer = ChurnScorer.from_files(context.artifacts["booster"], context.artifacts["meta"])

    # A pd.DataFrame hint keeps MLflow on the logged signature (no schema from hints).
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return self._scorer.predict(frame).reset_index(drop=True)


def model_input_example(frame: pd.DataFrame, meta: Mapping[str, Any], rows: int = 5) -> pd.DataFrame:
    """Feature rows shaped like the pyfunc input: numbers as float64, categories as strings."""
    categorical = set(meta.get("categories", {}))
    sample = frame.loc[:, list(meta["features"])].head(rows).copy()
    for col in sample.columns:
        if col in categorical:
            sample[col] = sample[col].astype("object").where(sample[col].notna(), None).astype(str)
        else:
            sample[col] = _widen(pd.to_numeric(sample[col]))
    return sample.reset_index(drop=True)


def pip_requirements() -> list[str]:
    """Pinned requirements of a logged model (the ``wikichurn`` package must be importable too)."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("mlflow", "lightgbm", "pandas", "numpy", "scikit-learn")]


def log_churn_model(
    model_dir: str | Path,
    input_example: pd.DataFrame,
    *,
    name: str = "model",
) -> Any:
    """Log ``model_dir`` (booster + meta) as a :class:`ChurnPyfunc` model of the active run.

    Args:
        model_dir: folder written by :func:`write_model_dir`.
        input_example: a few feature rows (see :func:`model_input_example`); the signature is
            inferred from them and the model's own output.
        name: the model's name within the run.

    Returns:
        MLflow's ``ModelInfo`` (``model_uri`` is ``models:/<model id>``).
    """
    from mlflow.models import infer_signature

    booster_path, meta_path = find_model_files(model_dir)
    scorer = ChurnScorer.from_files(booster_path, meta_path)
    with warnings.catch_warnings():
        # "integer columns cannot represent missing values": the integer features never are missing.
        warnings.filterwarnings("ignore", message=".*[Ii]nteger column", category=UserWarning)
        signature = infer_signature(input_example, scorer.predict(input_example).reset_index(drop=True))
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=ChurnPyfunc(),
            artifacts={"booster": str(booster_path), "meta": str(meta_path)},
            signature=signature,
            input_example=input_example,
            pip_requirements=pip_requirements(),
        )


def download_model(model_uri: str, dst: str | Path | None = None) -> Path:
    """Download a logged or registered model (e.g. ``models:/wikichurn@production``) to a local folder.

    Uses the tracking and registry URIs MLflow is configured with (``MLFLOW_TRACKING_URI``).
    Returns the folder; ``ChurnScorer.from_dir`` loads it.
    """
    from mlflow.artifacts import download_artifacts

    if dst is not None:
        Path(dst).mkdir(parents=True, exist_ok=True)
    return Path(download_artifacts(artifact_uri=model_uri, dst_path=None if dst is None else str(dst)))


def load_scorer(model_uri: str, dst: str | Path | None = None, *, num_threads: int = 0) -> ChurnScorer:
    """:func:`download_model` then :meth:`ChurnScorer.from_dir`."""
    return ChurnScorer.from_dir(download_model(model_uri, dst), num_threads=num_threads)


def copy_model_files(src: str | Path, dst: str | Path) -> Path:
    """Copy just ``booster.txt`` and ``model_meta.json`` of a model folder into ``dst``."""
    booster_path, meta_path = find_model_files(src)
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy2(booster_path, dst / BOOSTER_FILE)
    shutil.copy2(meta_path, dst / META_FILE)
    return dst


def _widen(values: pd.Series) -> pd.Series:
    # int64 and float64 only: MLflow refuses int -> double but widens int32 -> int64 itself.
    return values.astype("int64") if pd.api.types.is_integer_dtype(values) else values.astype("float64")
