"""Which model a request means, and whether its key may use it (and which hosted tools).

A requested id resolves to a catalogue model by exact id, then by alias (exact, then globs in
config order). A principal may use a catalogue model when one of its groups' grants matches
the id and, if the key narrows its models, one of the key's patterns matches too. Decisions are
memoised on the principal, which is rebuilt on every cache reload, so the hot path is a dict
lookup.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase

from tollway.config import ModelConfig, Settings
from tollway.governance.identity import Principal


def matches(patterns: Iterable[str], name: str) -> bool:
    """The one glob matcher of grants: exact ids and `fnmatch` patterns (`claude-*`, `tool:*`)."""
    return any(p == name or fnmatchcase(name, p) for p in patterns)


def tool_allowed(principal: Principal, name: str) -> bool:
    """A key may use hosted tool NAME when a grant of its groups matches `tool:<name>` and, if the
    key narrows its models, one of the key's patterns matches it too: the rule models follow."""
    target = f"tool:{name}"
    return matches(principal.grants, target) and (principal.key_models is None or matches(principal.key_models, target))


class Catalogue:
    def __init__(self, settings: Settings) -> None:
        self.models = settings.models
        self.by_id = {m.id: m for m in settings.models}
        self.exact_aliases = {k: self.by_id[v] for k, v in settings.aliases.items() if not _is_glob(k)}
        self.glob_aliases = [(k, self.by_id[v]) for k, v in settings.aliases.items() if _is_glob(k)]
        self._resolved: dict[str, ModelConfig | None] = {}

    def resolve(self, requested: str) -> ModelConfig | None:
        """The catalogue model a requested id means, or None (→ 404)."""
        try:
            return self._resolved[requested]
        except KeyError:
            pass
        model = self.by_id.get(requested) or self.exact_aliases.get(requested)
        if model is None:
            model = next((m for pattern, m in self.glob_aliases if fnmatchcase(requested, pattern)), None)
        if len(self._resolved) < 10_000:  # bounded: clients may send any string
            self._resolved[requested] = model
        return model

    @staticmethod
    def allowed(principal: Principal, model_id: str) -> bool:
        decision = principal.decisions.get(model_id)
        if decision is None:
            decision = matches(principal.grants, model_id) and (
                principal.key_models is None or matches(principal.key_models, model_id)
            )
            principal.decisions[model_id] = decision
        return decision

    def visible(self, principal: Principal) -> list[ModelConfig]:
        return [m for m in self.models if self.allowed(principal, m.id)]


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")
