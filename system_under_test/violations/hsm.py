"""Violations of key custody: objects created in the running stack's HSM with PKCS#11.

An operator with the user PIN opens a read-write session on the token (as
:meth:`RunningStack.hsm_session` does) and leaves key material where the page
says it must not be: a copy of the current token-encryption key under another
label of the namespace (extractable and not sensitive), the same copy readable
without login (``CKA_PRIVATE`` false), and the key's bytes in a data object.
None of these is a start-up switch; only a look at every object on the token,
as found, can see them.

Each ``plant_*`` function works on an open python-pkcs11 session, so a test can
plant into a token it reached otherwise (and remove what it planted); the
``Violation`` entries open the stack's session.
"""

from __future__ import annotations

import re
from typing import Any

from system_under_test.common import softhsm
from system_under_test.violations import Violation
from system_under_test.violations.stack import RunningStack, StackError

#: Labels the violations create (inside the namespace, matching no key class).
COPY_LABEL = softhsm.KEY_NAMESPACE + "token-key-copy"
PUBLIC_COPY_LABEL = softhsm.KEY_NAMESPACE + "token-key-public"
DATA_LABEL = softhsm.KEY_NAMESPACE + "token-key-data"
PLANTED_LABELS = (COPY_LABEL, PUBLIC_COPY_LABEL, DATA_LABEL)

_VERSION = re.compile(re.escape(softhsm.KEY_NAMESPACE) + r"token-encryption/v([0-9]+)$")


def current_token_key(session: Any) -> tuple[str, bytes]:
    """The label and value of the highest token-encryption key version on the token."""
    from pkcs11 import Attribute, ObjectClass

    versions: dict[int, Any] = {}
    for obj in session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY}):
        match = _VERSION.match(str(obj[Attribute.LABEL]))
        if match:
            versions[int(match.group(1))] = obj
    if not versions:
        raise StackError("no token-encryption key version on the token")
    key = versions[max(versions)]
    return str(key[Attribute.LABEL]), bytes(key[Attribute.VALUE])


def plant_key_copy(session: Any, label: str = COPY_LABEL, *, private: bool = True) -> None:
    """A copy of the current token key as a secret key under ``label``: extractable, not sensitive."""
    from pkcs11 import Attribute, KeyType, ObjectClass

    _, value = current_token_key(session)
    session.create_object({
        Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
        Attribute.TOKEN: True, Attribute.PRIVATE: private, Attribute.LABEL: label,
        Attribute.VALUE: value, Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})


def plant_data_copy(session: Any, label: str = DATA_LABEL) -> None:
    """The current token key's bytes in a (private) data object under ``label``."""
    from pkcs11 import Attribute, ObjectClass

    _, value = current_token_key(session)
    session.create_object({Attribute.CLASS: ObjectClass.DATA, Attribute.TOKEN: True,
                           Attribute.PRIVATE: True, Attribute.LABEL: label, Attribute.VALUE: value})


def remove_planted(session: Any, labels: tuple[str, ...] = PLANTED_LABELS) -> int:
    """Destroy every object under ``labels``; how many there were."""
    from pkcs11 import Attribute

    removed = 0
    for label in labels:
        for obj in list(session.get_objects({Attribute.LABEL: label})):
            obj.destroy()
            removed += 1
    return removed


def token_key_copy(stack: RunningStack) -> None:
    """Copy of the current token key under ``votriz/token-key-copy``, extractable, not sensitive."""
    with stack.hsm_session() as session:
        plant_key_copy(session)


def token_key_public_copy(stack: RunningStack) -> None:
    """The same copy under ``votriz/token-key-public`` with CKA_PRIVATE false (no PIN needed)."""
    with stack.hsm_session() as session:
        plant_key_copy(session, PUBLIC_COPY_LABEL, private=False)


def token_key_in_data_object(stack: RunningStack) -> None:
    """The current token key's bytes in the data object ``votriz/token-key-data``."""
    with stack.hsm_session() as session:
        plant_data_copy(session)


VIOLATIONS = (
    Violation("hsm-token-key-copy", "a copy of the current token-encryption key is created in the "
              "HSM under another namespaced label, extractable and not sensitive", token_key_copy),
    Violation("hsm-token-key-public", "a copy of the current token-encryption key is created in "
              "the HSM with CKA_PRIVATE false: readable without the PIN", token_key_public_copy),
    Violation("hsm-token-key-data-object", "the current token-encryption key's bytes are stored "
              "in a PKCS#11 data object in the HSM", token_key_in_data_object),
)
