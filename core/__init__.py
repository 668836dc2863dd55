"""Dream Explorer's training package: World Models (Ha & Schmidhuber, 2018) on CarRacing-v3.

Importing ``core`` registers the dream as the gymnasium env ``DreamCarRacing-v0``. The public API is
:mod:`core.api`.
"""

from core.envs.dream import register_dream_env

register_dream_env()
