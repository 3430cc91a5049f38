"""rlgen: does your agent generalize to levels it never saw?"""

__version__ = "0.1.0"
