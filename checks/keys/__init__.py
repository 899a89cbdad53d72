"""Key management: custody in the HSM, no key elsewhere, keys read at start, rotations.

The page promises (section "Key management" and the overview) that every key
of its table lives, namespaced, in hardware-backed storage; that no key is in
source code, configuration files or environment variables on disk; that keys
are read only through the secure storage interface at process start; and that
each key can be rotated as the table says, without service interruption.

One check per module. Collect, then judge: the probes (``harness/probes/``:
``hsm``, ``deployment``, ``channels``, ``rotation``, ``credentials``) do the
I/O (HSM listing, key search, process inspection, canary traffic, operator
commands); each module's ``*_verdict`` functions are pure and unit-tested on
hand-made observations. Key values read from the HSM are registered in
KnownSecrets when read and never appear in evidence; fingerprints name them.
"""
