"""The one placeholder policy: what looks like a secret but is a documentation example or a filler.

Every secret detector (fixed-shape tokens, assignments, URL credentials, ``Authorization`` lines)
asks ``is_placeholder`` about the secret part of what it found (the part after a fixed prefix
such as ``ghp_``, or the assigned value) and drops it when the answer is yes. A value is a
placeholder when:

1. it is a documented example published by the vendor for its docs (``DOCUMENTED_EXAMPLES``:
   AWS's ``AKIAIOSFODNN7EXAMPLE`` and its secret, Stripe's and GitHub's published sample keys,
   the Google API key of its API-key docs, the age specification's example identity, the example
   Azure DevOps PAT of Microsoft Purview's definition), or contains the word ``example`` (AWS marks every sample
   credential that way: ``…EXAMPLE``, ``…EXAMPLEKEY``);
2. it is an obvious filler: it contains ``xxxx`` or ``XXXX`` (in one case: a random token may hold ``XXxx``),
   ``****``, ``....`` or ``…``, or ends with ``...`` (an elided value: ``sk-ant-...``; a password may hold three
   dots inside it), a template or variable reference (``<token>``, ``<your key>``, ``${VAR}``, ``{{ secret }}``,
   ``%(name)s``, ``$(cmd)``), or one of the words ``your``, ``placeholder``, ``changeme``, ``change_me``, ``dummy``,
   ``redacted``, ``replace_me``, ``insert``;
3. it has at most three distinct characters (``0000000…``, ``abababab``, ``a1a1a1a1``);
4. it is a reference to a secret store, which names a secret without holding it (``STORE_REFERENCES``: a
   1Password ``op://…`` reference, an AWS Secrets Manager or SSM Parameter Store ARN, a Google Secret Manager
   resource name ``projects/…/secrets/…``, Azure App Service's ``@Microsoft.KeyVault(…)``, Bank-Vaults'
   ``vault:secret/…``, vals' ``ref+…://``).

Personal data is not subject to this policy: a test card number or a fictional phone number has
the format of a real one, and a DLP policy on personal data is about the format.
"""

from __future__ import annotations

import re

#: Published sample credentials (secret part only, i.e. after any fixed prefix, and whole values).
DOCUMENTED_EXAMPLES = frozenset((
    # AWS IAM user guide: "Managing access keys" (example access key id and secret access key)
    "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "IOSFODNN7EXAMPLE",
    # Stripe API reference, the test key shown to signed-out readers
    "4eC39HqLyjWDarjtT1zdp7dc", "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
    "BQokikJOvBiI2HlWgH4olfQ2", "sk_test_BQokikJOvBiI2HlWgH4olfQ2",
    # GitHub engineering blog, "Behind GitHub's new authentication token formats" (2021)
    "16C7e42F292c6912E7710c838347Ae178B4a",
    # Google Cloud docs, "Using API keys" / Firebase config samples
    "AIzaSyDOCAbC123dEf456GhI789jKl012-MnO", "SyDOCAbC123dEf456GhI789jKl012-MnO",
    # C2SP age specification (age-encryption.org/v1), "The X25519 recipient type": the example identity
    "GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX",
    # Microsoft Purview, "Azure DevOps personal access token" (sensitive information type): the example PAT
    "abcdefghijklmnopqrstuvwxyz012345679ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnoAZDOabcd",
))

_FILLERS = ("****", "....", "\u2026", "${", "{{", "}}", "%(", "$(", "your", "placeholder",
            "changeme", "change_me", "dummy", "redacted", "replace_me", "replaceme", "insert_", "example")


#: How references to a secret store begin (lower case), each from its product's documentation: 1Password CLI "Secret
#: reference syntax"; AWS ARN formats of Secrets Manager and Systems Manager parameters; Azure App Service "Use Key
#: Vault references"; Bank-Vaults' mutating webhook (``vault:secret/data/…#key``); helmfile/vals (``ref+vault://``).
STORE_REFERENCES = ("op://", "arn:aws:secretsmanager:", "arn:aws:ssm:", "@microsoft.keyvault(", "vault:secret/",
                    "ref+")
#: A name in angle brackets (``<token>``, ``<your key here>``, ``<API_KEY>``); a generated password may hold ``<`` and
#: ``>`` around other characters (``<k3,r>``, ``<t+LSXT>``).
_ANGLED = re.compile(r"<[A-Za-z_][\w .\-]{2,40}>")
#: Google Secret Manager's resource name of a secret or of one of its versions.
_GCP_SECRET = re.compile(r"projects/[\w.-]+/secrets/[\w-]+(?:/versions/[\w-]+)?\Z")


def is_placeholder(value: str) -> bool:
    """Whether a found secret (or its part after a fixed prefix) is a documented example or a filler."""
    if value in DOCUMENTED_EXAMPLES:
        return True
    low = value.lower()
    if "xxxx" in value or "XXXX" in value or any(f in low for f in _FILLERS) or _ANGLED.search(value) is not None:
        return True
    if low.endswith("..."):  # three dots elide the rest only at the end: a password may hold them ("P@ss...w0rd"),
        return True  # a shortened value ends so ("sk-ant-...")
    if low.startswith(STORE_REFERENCES) or _GCP_SECRET.match(value) is not None:
        return True
    return len(set(low)) <= 3
