"""Behaviour-cloning transformer (BCT): a GPT-style causal transformer over (observation, action)
histories, trained to predict the logged action, with no return conditioning.

It is a Decision Transformer without the return-to-go tokens (the "BCT" baseline of offline
generalization studies); the network, its training recipe and its episodic acting live in
``rlgen.agents.transformer``, shared with DT (``rlgen.agents.dt``).
"""

from __future__ import annotations

from typing import Any

from rlgen.agents.transformer import CausalTransformerAgent


class BCTransformer(CausalTransformerAgent):
    """Behaviour cloning with a causal transformer over the last ``context_length`` steps.

    Takes ``CausalTransformerAgent``'s arguments except ``return_conditioned`` and ``target_return``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs, return_conditioned=False)
