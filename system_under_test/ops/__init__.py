"""Operator commands of the reference service: ``python -m system_under_test.ops COMMAND``.

Each command reads ``STATE/api.toml`` and the HSM the way the API does, does
one job, and prints one JSON line saying what it did (never a secret).
"""
