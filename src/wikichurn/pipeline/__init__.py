"""The data path: ingestion, the medallion lakehouse (bronze, silver, gold, features) and EDA."""
