"""What every stage shares: settings, the churn definition, raw-file layout and storage. Imports no stage."""
