"""Ingestion: list the dumps site, take only ``projectviews-*`` files, land them in raw storage.

:mod:`.dumps` reads the site (HTTP or a folder) and :mod:`.land` writes the raw zone; the Lambda
entry point is :func:`lambda_handler`.
"""

from wikichurn.pipeline.ingest.land import IngestSummary, ingest, ingest_into, lambda_handler

__all__ = ["IngestSummary", "ingest", "ingest_into", "lambda_handler"]
