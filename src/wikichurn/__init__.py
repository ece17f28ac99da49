"""wikichurn: Wikimedia projectviews lakehouse and traffic-collapse model."""

__version__ = "0.1.0"
