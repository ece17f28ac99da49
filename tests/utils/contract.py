"""Check a written Delta table against its declared schema in :mod:`wikichurn.core.tables`."""

from __future__ import annotations

from collections.abc import Sequence

from deltalake import DeltaTable

from wikichurn.core.tables import Column

# Delta's names of the contract's Spark SQL types.
DELTA_TYPES = {
    "string": "string",
    "date": "date",
    "timestamp": "timestamp",
    "double": "double",
    "bigint": "long",
    "int": "integer",
    "boolean": "boolean",
}


def assert_matches_contract(path: str, columns: Sequence[Column]) -> None:
    """Same column names in the same order, the declared types, and no null where none is allowed."""
    table = DeltaTable(path)
    fields = table.schema().fields
    assert [f.name for f in fields] == [c.name for c in columns]
    got = {f.name: str(getattr(f.type, "type", f.type)) for f in fields}
    want = {c.name: DELTA_TYPES[c.type] for c in columns}
    wrong = {name: (got[name], want[name]) for name in want if got[name] != want[name]}
    assert not wrong, f"column types differ from the contract (got, declared): {wrong}"
    frame = table.to_pandas()
    nulls = [c.name for c in columns if not c.nullable and frame[c.name].isna().any()]
    assert not nulls, f"nulls in non-nullable columns: {nulls}"
