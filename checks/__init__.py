"""The checks: one module per check, grouped in one folder per promise area, collected by the
votriz-audit pytest plugin.

Conventions (see ../shared/STYLE.md, "Collect, then judge"; :mod:`harness.checkdir` is the one
place that knows this layout):

- ``checks/<area>/<name>.py`` holds one check: the function ``check_<name>``, whose id is
  ``<area>.<name>`` (e.g. ``transit.tls_versions``), and its pure verdict function(s), and
  nothing else. The check carries ``@pytest.mark.claims("CLAIM-ID", ...)`` naming the catalogue
  claims it verifies; the catalogue's claim-to-check links are derived from these markers.
- ``checks/<area>/conftest.py`` holds the fixtures the area's checks share (e.g. one TLS scan
  for every in-transit check); ``checks/<area>/__init__.py`` says what the area promises.
- Probes (``harness/probes/``) do all the I/O and return frozen, typed observations; where the
  service runs (its processes, logs, listeners, artifacts, topology) comes from the ``platform``
  fixture (:mod:`harness.platform`), so no check asks which backend it is on. ``checks/`` imports
  no I/O library (``tests/test_layout.py`` enforces it).
- The judgement is a pure function ``<name>_verdict(observation, policy) -> Verdict`` in the
  check's module, unit-tested on hand-made observations.
- The check attaches evidence and concludes:
  ``evidence.attach("name", data); evidence.conclude(verdict)``. Evidence the report draws in
  its own way is that kind's model (:mod:`harness.evidence_kinds`). A check that ends without
  concluding is reported as ERROR, never PASS.
- Fixtures from the plugin: ``profile`` (TargetProfile), ``policy`` (Policy), ``platform``
  (Platform), ``known_secrets`` (KnownSecrets), ``evidence`` (EvidenceRecorder, per check),
  ``report_dir`` (Path).
- A ProbeError raised anywhere (fixture or check) becomes ERROR with its message.
- A profile that does not give the harness access to what a promise is about is
  ``evidence.manual(...)`` with what a human must show: the promise still applies.
  ``evidence.not_applicable(...)`` is only for a promise that does not apply to the
  target at all (e.g. container topology on a service that runs as local processes).
"""
