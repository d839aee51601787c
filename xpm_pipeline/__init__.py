"""xpm-pipeline: a Dagster-orchestrated two-way sync between Xero Practice Manager and a SQL warehouse."""

__version__ = "0.1.0"
