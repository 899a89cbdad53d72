"""The evidence report and the signed bundle of a run.

A run's report directory holds what the pytest plugin wrote (``results.json``,
``junit.xml``, ``evidence/<check_id>/*``, perhaps ``LEAKS.txt``). This package
turns it into what people and tools read, and seals it:

- :mod:`harness.report.html`: ``report.html``, one self-contained page;
- :mod:`harness.report.sarif`: ``results.sarif`` (SARIF 2.1.0);
- :mod:`harness.report.oscal`: ``oscal-assessment-results.json`` (OSCAL);
- :mod:`harness.report.diff`: what changed between two runs;
- :mod:`harness.report.calibration`: the model of ``calibration.json``
  (which fault each check is expected to catch, and whether it did);
- :mod:`harness.report.bundle` and :mod:`harness.report.seal`: the seal, an
  in-toto statement of every file's SHA-256 in a signed DSSE envelope
  (``audit.intoto.jsonl``), and its verification;
- :mod:`harness.report.commands`: the ``report``, ``verify``, ``diff`` and
  ``sign`` subcommands, and :func:`~harness.report.commands.finalize`, called
  at the end of a run.
"""
