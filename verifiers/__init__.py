"""Verifiers score completions against reference answers (imported as ``rlvr.verifiers``).

``load(name, **config)`` builds a built-in (``math``, ``format``, ``code``) or an installed plugin;
``available()`` lists the names. See docs/verifiers.md for writing one.
"""

from rlvr.verifiers.base import Verifier, VerifyResult
from rlvr.verifiers.registry import VerifierError, available, load

__all__ = ["Verifier", "VerifyResult", "VerifierError", "available", "load"]
