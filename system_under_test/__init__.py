"""The reference Votriz-like service audited by votriz-audit (see CONTRACT.md)."""
