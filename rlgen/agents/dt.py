"""Decision Transformer (Chen et al., 2021) for discrete actions: the causal transformer of
``rlgen.agents.transformer`` with return-to-go tokens, trained by cross-entropy on the logged
actions and acting conditioned on a target return.

Written here rather than taken from d3rlpy (``DiscreteDecisionTransformer``) because d3rlpy's
discrete DT loss averages the cross-entropy over padded steps too (label 0), its acting wrapper
numbers timesteps from 1 where its training windows (and rlgen's) number them from 0, and it has
no weight-decay parameter groups; the reference study masks padding and uses minGPT's AdamW groups.
"""

from __future__ import annotations

from typing import Any

from rlgen.agents.transformer import CausalTransformerAgent


class DecisionTransformer(CausalTransformerAgent):
    """Return-conditioned causal transformer.

    Takes ``CausalTransformerAgent``'s arguments except ``return_conditioned``; ``target_return``
    is the return-to-go of each new episode's first step (the study sets it to a multiple of the
    dataset's best episode return) and may be changed between episodes.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs, return_conditioned=True)
