"""Dream Explorer, the app: drive CarRacing-v3 in reality and in the dream, see inside the models, train from
the GUI. Entry point: :func:`explorer.app.main` (``dream-explorer`` with no subcommand)."""

import os

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # gymnasium's CarRacing imports pygame
