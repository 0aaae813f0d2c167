"""The topic classifier: which rule of the bridge policy decides a topic, and so its direction.

Built on a filter trie, so classifying costs one walk down the topic's levels whatever the number
of rules. `cell explain topic` and the bridge monitor share it, so what Cell explains is what it
counts. When several rules match (validation only allows that among rules that agree on bridging),
`never` beats `local`, and otherwise the first rule in file order decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from policies.topics import FilterTrie

if TYPE_CHECKING:
    from policies import Policy
    from policies.model import TopicRule

TAGS = {"up": "↑hub", "down": "↓hub", "local": "✗ stays local", "never": "✗ never bridged"}


@dataclass(frozen=True)
class Verdict:
    """The direction of a topic and the index of the deciding rule (None: the default applied)."""

    direction: str
    rule: int | None


class Classifier:
    def __init__(self, policy: Policy) -> None:
        self.rules: list[TopicRule] = list(policy.mqtt.topics)
        self.default = policy.mqtt.bridge.default
        self._trie: FilterTrie[int] = FilterTrie()
        for i, r in enumerate(self.rules):
            self._trie.add(r.pattern, i)
        # Verdicts are immutable: one per rule, made once, so the hot path allocates none.
        self._verdicts = [Verdict(r.direction, i) for i, r in enumerate(self.rules)]
        self._default = Verdict(self.default, None)

    def classify(self, topic: str) -> Verdict:
        """The verdict for a (valid) topic name: the deciding rule, or the default."""
        hits = self._trie.match(topic)
        if not hits:
            return self._default
        best = hits[0]
        if len(hits) > 1 and self.rules[best].direction != "never":
            for i in hits:
                if self.rules[i].direction == "never":
                    best = i
                    break
        return self._verdicts[best]
