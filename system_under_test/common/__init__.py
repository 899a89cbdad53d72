"""What both backends of the reference service set up the same way.

``pki`` (CA and certificates), ``softhsm`` (token, PINs and keys), ``edge``
(nginx's configuration), ``redis_config``, ``postgres_roles`` (database,
roles and their SCRAM verifiers), ``profile`` (``api.toml`` and
``target.toml``) and ``host`` (binaries, environment and the error a step
raises). A backend starts processes or containers; it renders nothing itself.
"""
