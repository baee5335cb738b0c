"""Example plugin: score = fraction of configured keywords that occur in the completion's answer section.

It shows the whole contract a plugin needs: a class with a ``name`` and ``__call__(completion, answer, *, meta)``
returning ``VerifyResult``; ``None`` when it does not apply; never raising.
"""

from __future__ import annotations

from typing import Any, Mapping

from rlvr.verifiers import VerifyResult


class KeywordVerifier:
    name = "keyword"

    def __init__(self, keywords: list[str] | None = None, case_sensitive: bool = False, after: str = "</think>"):
        if keywords is not None and not all(isinstance(k, str) and k for k in keywords):
            raise ValueError("keyword verifier: keywords must be non-empty strings")
        self.keywords = list(keywords or [])
        self.case_sensitive = case_sensitive
        self.after = after

    def __call__(self, completion: str, answer: Any = None, *, meta: Mapping[str, Any] | None = None) -> VerifyResult:
        # Keywords from the sample's meta override the config, so one dataset column can drive the check.
        keywords = list((meta or {}).get("keywords", self.keywords))
        if not keywords:
            return VerifyResult(score=None)  # nothing to check: does not apply (not 0)
        text = completion if isinstance(completion, str) else str(completion)
        if self.after and self.after in text:
            text = text[text.rfind(self.after) + len(self.after):]
        if not self.case_sensitive:
            text, keywords = text.lower(), [k.lower() for k in keywords]
        hits = sum(k in text for k in keywords)
        return VerifyResult(score=hits / len(keywords), metrics={"hits": float(hits)})
