"""Secret-shaped values: the rule set the plaintext sweep applies to stored text.

The canary sweep (:mod:`harness.sweep`) finds the secrets the audit knows; this
module finds the ones it does not: provider tokens, JWTs, ``Authorization``
headers, private keys, each recognised by its shape.

Where a maintained rule set covers a shape, its rules are used as published:
the regular expressions of ``detect-secrets``' plugins (AWS, Azure, Discord,
GitHub, GitLab, JWT with its own well-formedness test, Mailchimp, npm,
OpenAI, private keys, PyPI, SendGrid, Slack, Square, Stripe, Telegram,
Twilio, basic-auth URLs), read from the plugin classes, so an upgrade of the
library brings its fixes. Plugins tuned for source code and noisy on stored
data are left out (keyword assignments, Artifactory's ``AP…`` prefix,
IBM/Cloudant/SoftLayer assignments, public IPs); its entropy measure is used
only where the inventory says a column holds ciphertext
(:func:`high_entropy`). What it lacks is added as data in
``fixtures/policy/secret-patterns.toml`` (:func:`load_own_rules`), each rule
tested on ``fixtures/vectors/secrets/``: bearer ``Authorization`` headers, OAuth tokens
of the five platforms the page names (Instagram/Facebook, LinkedIn,
Twitter/X app bearer tokens, TikTok, YouTube/Google) and of the providers the
service calls (Anthropic, Resend, fal.ai, OpenAI project keys). OAuth tokens
without a prefix (Twitter/X OAuth 2.0 user tokens, id tokens, client secrets of
any platform) are found by the field that holds them: the value of an
``access_token``, ``refresh_token``, ``id_token`` or ``client_secret`` JSON,
query or form field, when it reads as a token (mixed letters and digits, high
entropy, not a Fernet token). A bare unprefixed token outside such a field is
not recognised by shape.

Our own rules do not match inside a longer run of token characters, so a
prefix that happens to occur inside a Fernet token, a bcrypt hash or a hex
digest is not a finding. A match carries a keyed fingerprint
(:class:`ShapeFinder`), never the value, out of this module's callers.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.base import RegexBasedDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.discord import DiscordBotTokenDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.high_entropy_strings import (
    Base64HighEntropyString,
    HexHighEntropyString,
)
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.mailchimp import MailchimpDetector
from detect_secrets.plugins.npm import NpmDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.private_key import PrivateKeyDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
from detect_secrets.plugins.twilio import TwilioKeyDetector
from pydantic import BaseModel, ConfigDict, Field, field_validator

from harness.bundled import bundled
from harness.tomlfile import load_toml_model

#: The detect-secrets plugins whose rules apply to stored data, with a rule name each.
DETECT_SECRETS_PLUGINS: tuple[tuple[str, type[RegexBasedDetector]], ...] = (
    ("aws-key", AWSKeyDetector), ("azure-storage-key", AzureStorageKeyDetector),
    ("basic-auth-url", BasicAuthDetector), ("discord-bot-token", DiscordBotTokenDetector),
    ("github-token", GitHubTokenDetector), ("gitlab-token", GitLabTokenDetector),
    ("jwt", JwtTokenDetector), ("mailchimp-key", MailchimpDetector), ("npm-token", NpmDetector),
    ("openai-key", OpenAIDetector), ("private-key", PrivateKeyDetector),
    ("pypi-token", PypiTokenDetector), ("sendgrid-key", SendGridDetector),
    ("slack-token", SlackDetector), ("square-oauth-secret", SquareOAuthDetector),
    ("stripe-key", StripeDetector), ("telegram-bot-token", TelegramBotTokenDetector),
    ("twilio-key", TwilioKeyDetector),
)
#: A literal each match of a rule contains: a text without it is not searched with the rule
#: (a test over the vectors keeps these true). It also keeps a rule with a leading ``.+``
#: (npm's) from being tried at every position of a long binary line.
_HINTS = {"npm-token": "_authToken", "jwt": "eyJ", "private-key": "PRIVATE KEY",
          "basic-auth-url": "://", "slack-token": "", "sendgrid-key": "SG.",
          "openai-key": "T3BlbkFJ", "pypi-token": "pypi-", "square-oauth-secret": "sq0csp-",
          "stripe-key": "k_live_", "azure-storage-key": "AccountKey="}
# Our rules do not match inside a longer run of token characters (base64, base64url, hex,
# the dots of a JWT): checked on the character before a match (a look-behind in the
# expression would cost the regex engine its fast search for the rule's literal prefix).
# detect-secrets' rules that start with a token character are held to the same (its GitHub
# rule matched once in 50,000 Fernet tokens without); its basic-auth URL, private-key and
# JWT rules are not (their matches follow ``https``, ``-----`` or ``/``; a JWT needs JSON).
_TOKEN_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-+/.")
_JWT_SIGNATURE = re.compile(r"[A-Za-z0-9_\-+/=]*")
_UNBOUNDED_PLUGINS = frozenset({"basic-auth-url", "private-key", "jwt", "npm-token"})
_END = r"(?![A-Za-z0-9_\-])"
# A field rule's regex names the field; the value follows it: 20 or more token characters
# (the value alone is the match, group ``value``), held to :func:`_token_like`.
_FIELD_VALUE = (r"[\"']?\s*[:=]\s*[\"']?(?P<value>[A-Za-z0-9._~+/%\-]{20,}={0,2})"
                r"(?![A-Za-z0-9._~+/%\-])")
#: Our rules (what detect-secrets lacks) as data, the way gitleaks keeps its rules.
SECRET_RULES_PATH = bundled("policy", "secret-patterns.toml")


class SecretRulesError(ValueError):
    """The rules file cannot be read or holds a wrong rule (one line per problem)."""


class _RuleEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    kind: str = Field(min_length=1)
    regex: str = Field(min_length=1)
    hint: str = ""

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value


class _RulesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1]
    rule: tuple[_RuleEntry, ...] = ()
    field_rule: tuple[_RuleEntry, ...] = ()


#: Fewest bits of Shannon entropy per character a field's value must carry to be taken for
#: a token (random base64url of 20 characters carries about 4, below 3.5 once in 2,000; a
#: timestamp about 3.3).
FIELD_VALUE_MIN_ENTROPY = 3.5
#: The prefix every Fernet token of version 0x80 begins with (the service's ciphertext).
_FERNET_PREFIX = "gAAAAA"


def _shannon(text: str) -> float:
    counts: dict[str, int] = {}
    for char in text:
        counts[char] = counts.get(char, 0) + 1
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _token_like(value: str) -> bool:
    """Whether a field's value reads as a token: mixed characters (letters and digits, or
    upper and lower case: a lower-case placeholder such as ``your_access_token_here`` is
    none), high entropy, and not ciphertext the service is meant to store there (a Fernet
    token)."""
    mixed = ((any(c.isdigit() for c in value) and any(c.isalpha() for c in value))
             or (any(c.isupper() for c in value) and any(c.islower() for c in value)))
    return (mixed and not value.startswith(_FERNET_PREFIX)
            and _shannon(value) >= FIELD_VALUE_MIN_ENTROPY)


@dataclass(frozen=True)
class SecretRule:
    """One shape of secret.

    Attributes:
        name: a stable id (``jwt``, ``google-oauth-access-token``).
        kind: what it is, in words (detect-secrets' ``secret_type`` for its rules).
        source: ``detect-secrets <Plugin>`` or ``votriz-audit``.
        patterns: its regular expressions (multi-line: ``^``/``$`` at line ends).
        hint: a literal every match contains ("" when there is none).
        folded: whether ``hint`` is looked for in the lower-cased text (a rule that
            ignores case).
        bounded: whether a match preceded by a token character is no match (it lies
            inside a longer token: a Fernet token, a hash, a digest).
        valid: a further test of a match (JWT: header and payload are JSON).
        tail: characters a match is extended over (detect-secrets' JWT expression stops
            after the payload's dot; the signature is part of the value).
    """

    name: str
    kind: str
    source: str
    patterns: tuple[re.Pattern[str], ...]
    hint: str = ""
    folded: bool = False
    bounded: bool = False
    valid: Callable[[str], bool] | None = None
    tail: re.Pattern[str] | None = None


def _from_plugin(name: str, plugin: type[RegexBasedDetector]) -> SecretRule:
    # The plugin's own expressions, made multi-line so that its anchors (Telegram's) hold
    # per stored line; its own validity test where it has one (JWT).
    denylist: Iterable[re.Pattern[str]] = plugin.denylist  # type: ignore[assignment]
    patterns = tuple(re.compile(p.pattern, p.flags | re.MULTILINE) for p in denylist)
    jwt = plugin is JwtTokenDetector
    return SecretRule(name, str(plugin.secret_type), f"detect-secrets {plugin.__name__}", patterns,
                      _HINTS.get(name, ""), bounded=name not in _UNBOUNDED_PLUGINS,
                      valid=JwtTokenDetector.is_formally_valid if jwt else None,
                      tail=_JWT_SIGNATURE if jwt else None)


def load_own_rules(path: Path = SECRET_RULES_PATH) -> tuple[SecretRule, ...]:
    """Our rules from the TOML file at ``path`` (``[[rule]]`` first, then ``[[field_rule]]``).

    A ``[[rule]]`` that ignores case (``(?i)``) is looked for by its hint in the
    lower-cased text and may follow any character; any other must stand alone (not
    inside a longer run of token characters). A ``[[field_rule]]``'s regex names a
    field, case ignored; the value after it is the match, held to :func:`_token_like`.

    Raises:
        SecretRulesError: the file cannot be read, or a rule in it is wrong.
    """
    data = load_toml_model(path, _RulesFile, what="secret rules", error=SecretRulesError)
    rules = []
    for entry in data.rule:
        folded = bool(re.compile(entry.regex).flags & re.IGNORECASE)
        pattern = re.compile(entry.regex if folded else entry.regex + _END)
        rules.append(SecretRule(entry.name, entry.kind, "votriz-audit", (pattern,), entry.hint,
                                folded=folded, bounded=not folded))
    rules += [SecretRule(entry.name, entry.kind, "votriz-audit",
                         (re.compile("(?i)" + entry.regex + _FIELD_VALUE),), entry.hint,
                         folded=True, valid=_token_like)
              for entry in data.field_rule]
    return tuple(rules)


#: Every rule, detect-secrets' first.
RULES: tuple[SecretRule, ...] = (
    *(_from_plugin(name, plugin) for name, plugin in DETECT_SECRETS_PLUGINS),
    *load_own_rules(),
)


@dataclass(frozen=True)
class SecretMatch:
    """One secret-shaped value in a text.

    Attributes:
        rule: the rule's name.
        kind: what it is, in words.
        start: offset of its first character in the text searched.
        end: offset just past it.
        fingerprint: keyed fingerprint of the value (never the value).
        value: the value itself, for the caller to register as a known secret so that
            nothing the run writes can hold it; never printed (not in repr).
    """

    rule: str
    kind: str
    start: int
    end: int
    fingerprint: str
    value: str = field(repr=False, compare=False)


class ShapeFinder:
    """Finds secret-shaped values with :data:`RULES` and names them by a keyed fingerprint.

    The fingerprint is an HMAC-SHA256 under a key made for the run (or given): two
    findings of one run with the same fingerprint are the same value, and a short or
    guessable value (a basic-auth password) cannot be recovered from the report by
    trying candidates, as it could from a plain hash.

    Attributes:
        rules: the rules applied.
    """

    def __init__(self, rules: tuple[SecretRule, ...] = RULES, *, key: bytes | None = None) -> None:
        self.rules = rules
        self._key = key if key is not None else secrets.token_bytes(32)

    def fingerprint(self, value: str) -> str:
        """``hmac:`` and the first 12 hex digits of HMAC-SHA256(run key, value)."""
        digest = hmac.new(self._key, value.encode("utf-8", "surrogateescape"), hashlib.sha256)
        return "hmac:" + digest.hexdigest()[:12]

    def find(self, text: str) -> list[SecretMatch]:
        """Every secret-shaped value in ``text``, in order; one match per place (the first rule
        that matches a span wins, a span inside an earlier match is not reported again)."""
        found: list[SecretMatch] = []
        folded: str | None = None
        for rule in self.rules:
            if rule.hint:
                if rule.folded and folded is None:
                    folded = text.lower()
                searched = folded if rule.folded and folded is not None else text
                if rule.hint not in searched:
                    continue
            for pattern in rule.patterns:
                keyed = "value" in pattern.groupindex
                for match in pattern.finditer(text):
                    # A rule keyed on a field's name reports the field's value alone.
                    value = match.group("value") if keyed else match.group(0)
                    start = match.start("value") if keyed else match.start()
                    if not value or (rule.bounded and start and text[start - 1] in _TOKEN_CHARACTERS):
                        continue
                    if rule.valid is not None and not rule.valid(value):
                        continue
                    end = match.end("value") if keyed else match.end()
                    if rule.tail is not None:
                        tail = rule.tail.match(text, end)
                        if tail is not None:
                            end = tail.end()
                            value = text[start:end]
                    found.append(SecretMatch(rule.name, rule.kind, start, end,
                                             self.fingerprint(value), value))
        found.sort(key=lambda m: (m.start, -m.end))
        kept: list[SecretMatch] = []
        for item in found:
            if kept and item.start < kept[-1].end:
                continue
            kept.append(item)
        return kept


_BASE64 = Base64HighEntropyString()
_HEX = HexHighEntropyString()
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
#: Shorter strings are not judged by entropy: too few characters to tell.
HIGH_ENTROPY_MIN_LENGTH = 20


def high_entropy(value: str) -> bool:
    """Whether ``value`` is a high-entropy string by detect-secrets' measure and limits
    (Shannon entropy over the base64 alphabet above 4.5, or over hex digits above 3.0);
    used where a column must hold ciphertext and a cell is not a token of it."""
    text = value.strip()
    if len(text) < HIGH_ENTROPY_MIN_LENGTH:
        return False
    if set(text) <= _HEX_DIGITS:
        return _HEX.calculate_shannon_entropy(text) > _HEX.entropy_limit
    return _BASE64.calculate_shannon_entropy(text) > _BASE64.entropy_limit


def iter_rules() -> Iterator[tuple[str, str, str]]:
    """(name, kind, source) of every rule, for the evidence."""
    for rule in RULES:
        yield rule.name, rule.kind, rule.source
