"""Comparing two feature tables column by column (the Spark and the numpy compilations)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from wikichurn.core.churn import KEY_COLUMNS


def assert_same_features(got: pd.DataFrame, want: pd.DataFrame, columns: Sequence[str]) -> None:
    """Equal rows (sorted by the keys), texts exactly, numbers to 1e-9, NULL = NaN."""
    keys = list(KEY_COLUMNS)
    got = got[list(columns)].sort_values(keys).reset_index(drop=True)
    want = want[list(columns)].sort_values(keys).reset_index(drop=True)
    assert len(got) == len(want)
    for column in columns:
        a, b = got[column], want[column]
        if a.dtype == object or b.dtype == object or column == "label_available":
            assert a.astype(str).tolist() == b.astype(str).tolist(), column
        else:
            np.testing.assert_allclose(
                a.astype(float).to_numpy(), b.astype(float).to_numpy(), rtol=1e-9, atol=1e-9, err_msg=column
            )
