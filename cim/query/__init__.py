"""The query service over a built city: text, spatial, element and combined-condition queries,
linked objects, statistics and result output (``/api/query``, ``cim query``); see
:mod:`cim.query.engine`."""

from cim.query.engine import GROUPS, Query, Selection, feature_detail, result_rows, schema_of, select, statistics
from cim.query.output import results_csv, results_geojson
from cim.query.store import FeatureStore, open_store

__all__ = [
    "GROUPS",
    "FeatureStore",
    "Query",
    "Selection",
    "feature_detail",
    "open_store",
    "result_rows",
    "results_csv",
    "results_geojson",
    "schema_of",
    "select",
    "statistics",
]
