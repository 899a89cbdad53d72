"""The Docker backend of the reference service: images, topology, ``up`` / ``down``.

Importing this package imports nothing heavy: ``fakes_server`` runs inside
the fakes image, which has no Docker SDK.
"""
