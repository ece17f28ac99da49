"""LightGBM's single-row C predictor, for the one-instance requests of the scoring service.

``Booster.predict`` checks and converts its input in Python on every call (about 60 us for one
row of 43 features and 200 trees, most of a one-instance ``/score``); LightGBM's C API has a path
made for exactly this case: ``LGBM_BoosterPredictForMatSingleRowFastInit`` parses the prediction
parameters once into a *fast config*, and ``LGBM_BoosterPredictForMatSingleRowFast`` then scores
one dense float64 row in a few microseconds. Same trees, same code inside LightGBM, so the same
numbers (tested bit for bit against ``Booster.predict``).

A fast config holds per-call buffers, so calls on one config are serialised with a lock (never
contended on the service's event loop; batches from other threads simply wait their turn).

The C functions are reached through ``lightgbm.basic`` (its loaded library and error check), which
is not public API: the package is pinned below 5, and ``tests/training/test_model.py`` compares
this path with ``Booster.predict`` bit for bit on every install.
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from typing import Literal

import lightgbm as lgb
import numpy as np
from lightgbm.basic import _LIB, _c_str, _safe_call

_NORMAL, _CONTRIB = 0, 3  # C_API_PREDICT_NORMAL, C_API_PREDICT_CONTRIB
_FLOAT64 = 1  # C_API_DTYPE_FLOAT64


class SingleRowPredictor:
    """Scores (or explains) one row at a time with a fast config of ``booster``.

    Args:
        booster: the trained booster; kept alive by this object.
        kind: ``"normal"`` for the risk score, ``"contrib"`` for SHAP contributions plus the bias.
        num_threads: LightGBM threads (1: a single row has nothing to share out).
    """

    def __init__(self, booster: lgb.Booster, kind: Literal["normal", "contrib"] = "normal", num_threads: int = 1):
        self._booster = booster  # the config points into the booster: it must outlive the config
        self._columns = booster.num_feature()
        width = self._columns + 1 if kind == "contrib" else 1
        self._out = np.empty(width, dtype=np.float64)
        self._out_ptr = self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        self._out_len = ctypes.c_int64(0)
        self._lock = threading.Lock()
        handle = ctypes.c_void_p()
        # Booster.predict's default: the best iteration when the model has one (0 = every tree).
        iterations = booster.best_iteration if booster.best_iteration > 0 else -1
        _safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(_CONTRIB if kind == "contrib" else _NORMAL),
                ctypes.c_int(0),
                ctypes.c_int(iterations),
                ctypes.c_int(_FLOAT64),
                ctypes.c_int32(self._columns),
                _c_str(f"num_threads={num_threads}"),
                ctypes.byref(handle),
            )
        )
        self._handle = handle
        self._free = weakref.finalize(self, _LIB.LGBM_FastConfigFree, handle)

    def predict(self, row: np.ndarray) -> np.ndarray:
        """The prediction of one row (``num_feature`` float64 values): a new array, 1 value or ``num_feature + 1``."""
        data = np.ascontiguousarray(row, dtype=np.float64)
        if data.shape != (self._columns,):
            raise ValueError(f"expected one row of {self._columns} features, got shape {data.shape}")
        with self._lock:
            _safe_call(
                _LIB.LGBM_BoosterPredictForMatSingleRowFast(
                    self._handle, data.ctypes.data_as(ctypes.c_void_p), ctypes.byref(self._out_len), self._out_ptr
                )
            )
            return self._out[: self._out_len.value].copy()

    def close(self) -> None:
        """Free the fast config now (also done when the object is collected)."""
        self._free()
