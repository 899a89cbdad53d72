"""Parsers for the stored formats the page promises: Fernet tokens and bcrypt hashes.

They are pure and fast (no I/O), run over every cell of a column, and never
raise anything but their own typed error, whatever bytes a database hands them.
"""
