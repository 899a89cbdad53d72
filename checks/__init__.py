"""The checks: one module per promise area, collected by the votriz-audit pytest plugin.

Conventions (see ../shared/STYLE.md, "Collect, then judge"):

- A check is a function named ``check_<name>`` in ``checks/<area>.py``; its id is
  ``<area>.<name>`` (e.g. ``transit.tls_versions``). It carries
  ``@pytest.mark.claims("CLAIM-ID", ...)`` naming the claims it verifies.
- Probes (``harness/probes/``) do the I/O and return frozen observations;
  expensive ones are session-scoped fixtures defined in the area module.
- The judgement is a pure function ``<name>_verdict(observation, policy) -> Verdict``
  in the same module, unit-tested on hand-made observations.
- The check attaches evidence and concludes:
  ``evidence.attach("name", data); evidence.conclude(verdict)``.
  A check that ends without concluding is reported as ERROR, never PASS.
- Fixtures from the plugin: ``profile`` (TargetProfile), ``policy`` (Policy),
  ``known_secrets`` (KnownSecrets), ``evidence`` (EvidenceRecorder, per check),
  ``report_dir`` (Path).
- A ProbeError raised anywhere (fixture or check) becomes ERROR with its message.
- A profile that does not give the harness access to what a promise is about is
  ``evidence.manual(...)`` with what a human must show: the promise still applies.
  ``evidence.not_applicable(...)`` is only for a promise that does not apply to the
  target at all (e.g. container topology on a service that runs as local processes).
"""
