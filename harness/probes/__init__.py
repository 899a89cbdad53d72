"""Probes: the I/O half of the harness.

A probe talks to the target (a TLS handshake, a table read, an HSM listing, a
process inspection) and returns frozen, typed observations. It raises
:class:`harness.outcomes.ProbeError` with a precise, secret-free message when
it cannot observe. Probes never judge; checks do.
"""
