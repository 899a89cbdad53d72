"""Where the auditor's bundled data is: the claims catalogue and the page, the default policy
and its rule files (inventory, key classes, secret patterns), the calibration expectations,
and the example profiles and waiver file.

In a checkout that data is the repository's top-level ``fixtures/``. An installed wheel has
no ``fixtures/`` beside ``harness/``: the distribution ships the same files as the package
``harness._bundled`` (pyproject.toml maps that package to ``fixtures/`` with setuptools'
``package-dir`` and lists the files in ``package-data``), so the repository keeps one copy,
in its place, and pip installs it inside ``harness/`` where importlib.resources finds it.
Before this module every reader looked for ``<site-packages>/fixtures/...``, and an installed
``votriz-audit run`` stopped at "cannot read the policy" (issue 14).

The readers take a :class:`~pathlib.Path` (their errors name the file, the catalogue directory
holds the page beside its TOML), so the data must be files on disk: pip installs a wheel
unpacked, and a package imported from a zip archive finds the checkout's path, which is not
there, and says which file it could not read. Test vectors stay in ``fixtures/vectors/``:
only the tests read them, and they do not ship. Measured: the wheel carries 11 data files,
45,819 bytes (of a 558 KB wheel); ``tests/test_installed_distributions.py`` builds it, installs
it in a fresh virtualenv and audits from outside the checkout.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

#: The package the wheel ships the data in (pyproject.toml, ``[tool.setuptools.package-dir]``).
PACKAGE = "harness._bundled"
#: The repository's data, where ``harness`` is imported from a checkout (editable or not).
CHECKOUT_DATA = Path(__file__).resolve().parent.parent / "fixtures"


def data_dir() -> Path:
    """The directory of the bundled data: the installed ``harness/_bundled/`` when there is one,
    else the checkout's ``fixtures/`` (a checkout never has ``harness/_bundled/``: setuptools
    builds the wheel's copy in its own build directory)."""
    installed = resources.files("harness").joinpath(PACKAGE.rpartition(".")[2])
    if isinstance(installed, Path) and installed.is_dir():
        return installed
    return CHECKOUT_DATA


#: Resolved once, at import: where every bundled file is read from.
DATA_DIR = data_dir()


def bundled(*parts: str) -> Path:
    """The path of one bundled file or directory, e.g. ``bundled("policy", "default.toml")``."""
    return DATA_DIR.joinpath(*parts)
