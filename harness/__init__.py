"""votriz-audit: verify a running system against the security promises its company publishes."""

__version__ = "0.1.0"
