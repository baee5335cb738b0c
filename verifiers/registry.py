"""Find verifiers by name: the built-ins below plus any installed distribution's ``rlvr.verifiers`` entry points.

A plugin package declares, in its pyproject.toml::

    [project.entry-points."rlvr.verifiers"]
    myname = "mypkg.module:MyVerifier"

and ``load("myname", **config)`` then calls ``MyVerifier(**config)``. Targets are imported lazily, so a broken
plugin (or a built-in whose optional dependencies are missing) fails only when it is loaded, with its name in the
message. Two providers of one name are an error naming both, never a silent "last one wins".
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any

from rlvr.verifiers.base import Verifier

ENTRY_POINT_GROUP = "rlvr.verifiers"

BUILTINS: dict[str, str] = {
    "math": "rlvr.verifiers.math:MathVerifier",
    "format": "rlvr.verifiers.format:FormatVerifier",
    "code": "rlvr.verifiers.code:CodeVerifier",
    "arith_steps": "rlvr.verifiers.arith_steps:ArithStepsVerifier",
}

HOW_TO_REGISTER = (
    'register one with an entry point in your package\'s pyproject.toml:\n'
    '    [project.entry-points."rlvr.verifiers"]\n'
    '    myname = "mypkg.module:MyVerifier"\n'
    "then `pip install` the package (see docs/verifiers.md, \"Writing a verifier\")"
)


class VerifierError(ValueError):
    """A verifier could not be found, was claimed twice, or could not be constructed."""


def _providers() -> dict[str, list[tuple[str, str]]]:
    """name -> [(provider, "module:attr"), ...]; provider is a distribution name or "rlvr (built-in)"."""
    found: dict[str, list[tuple[str, str]]] = {n: [("rlvr (built-in)", t)] for n, t in BUILTINS.items()}
    seen: set[tuple[str, str, str]] = set()
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else "<unknown distribution>"
        key = (ep.name, dist_name, ep.value)
        if key in seen:  # one distribution visible twice on sys.path (e.g. editable + site-packages)
            continue
        seen.add(key)
        if dist_name == "rlvr" and found.get(ep.name) == [("rlvr (built-in)", ep.value)]:
            continue
        found.setdefault(ep.name, []).append((dist_name, ep.value))
    return found


def check_name(name: str) -> None:
    """Raise ``VerifierError`` (listing what is installed) unless ``name`` can be looked up."""
    if ":" in name:
        return
    providers = _providers()
    if name not in providers:
        raise VerifierError(f"unknown verifier {name!r}; installed: {', '.join(sorted(providers))}.\n"
                            f"To add one, {HOW_TO_REGISTER}")


def available() -> list[str]:
    """Names ``load`` accepts: built-ins and installed plugins (including ones that are claimed twice)."""
    return sorted(_providers())


def _import_target(name: str, target: str, provider: str) -> Any:
    module_name, _, attr = target.partition(":")
    try:
        obj = importlib.import_module(module_name)
        for part in attr.split(".") if attr else []:
            obj = getattr(obj, part)
    except Exception as exc:  # noqa: BLE001 - any import failure of a plugin is reported the same way
        raise VerifierError(
            f"verifier {name!r} from {provider} ({target}) could not be imported: {type(exc).__name__}: {exc}"
        ) from exc
    return obj


def load(name: str, **config: Any) -> Verifier:
    """Construct the verifier registered as ``name`` with ``config`` as keyword arguments.

    ``name`` may also be an import path ``"pkg.module:Factory"`` (no packaging needed: handy in notebooks,
    tests, and for trying a verifier before publishing it).
    """
    if ":" in name:
        providers = {name: [("import path", name)]}
    else:
        providers = _providers()
    if name not in providers:
        installed = ", ".join(sorted(providers)) or "(none)"
        raise VerifierError(f"unknown verifier {name!r}; installed: {installed}.\nTo add one, {HOW_TO_REGISTER}")
    claims = providers[name]
    if len(claims) > 1:
        who = " and ".join(f"{p} ({t})" for p, t in claims)
        raise VerifierError(f"verifier name {name!r} is claimed by {who}; uninstall one or rename its entry point")
    provider, target = claims[0]
    factory = _import_target(name, target, provider)
    try:
        verifier = factory(**config)
    except (TypeError, ValueError) as exc:
        raise VerifierError(f"verifier {name!r} rejected its config {config!r}: {exc}") from exc
    if not callable(verifier) or not isinstance(getattr(verifier, "name", None), str):
        raise VerifierError(
            f"verifier {name!r} from {provider} ({target}) built {type(verifier).__name__}, which is not a Verifier "
            "(needs a str `name` and `__call__(completion, answer, *, meta=None) -> VerifyResult`)"
        )
    return verifier
