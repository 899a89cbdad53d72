"""The reference service's API: a small Votriz-like Starlette application.

It keeps every promise of the published Encryption page unless a fault from
``system_under_test.faults`` is switched on in ``api.toml``.
"""
