"""The local backend: the whole reference service as processes under one state directory.

``stack.up(state_dir, faults)`` starts it and returns a ``StackInfo``;
``stack.down(state_dir)`` stops it and removes the directory;
``stack.status(state_dir)`` says what is running. The modules, one per part:
``postgres``, ``redis``, ``nginx`` (the TLS edge), ``api_server`` (gunicorn and
the ops commands), ``processes`` (starting, waiting, stopping) and ``stack``
(the order of it all). What the Docker backend sets up the same way (PKI,
SoftHSM token, configurations, the target profile) is in ``system_under_test.common``.
"""
