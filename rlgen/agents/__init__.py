"""Agents: one interface (``fit``, ``act``, ``save``, ``load``) over SB3, d3rlpy and rlgen's own code."""

from rlgen.agents.quiet import silence_gym_banner

silence_gym_banner()
