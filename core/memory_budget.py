"""Whether a config fits in this machine's RAM: estimates made before any model is built, so a stage refuses a
setting that would exhaust memory with a one-line :class:`core.errors.ConfigError` instead of being killed."""

from __future__ import annotations

import os

from core.errors import ConfigError


def machine_memory_bytes() -> int | None:
    """This machine's physical RAM in bytes (``psutil`` when installed, else ``os.sysconf``), or None if unknown."""
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except ImportError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # a platform without these names
        return None


def check_fits_in_memory(what: str, needed_bytes: float) -> None:
    """Refuse a config whose estimated memory, ``needed_bytes``, exceeds the machine's RAM.

    Raises:
        ConfigError: one line naming ``what`` (the flags and how the estimate is made), the estimate and the RAM.
    """
    ram = machine_memory_bytes()
    if ram is not None and needed_bytes > ram:
        raise ConfigError(
            f"{what} needs about {needed_bytes / 2**30:,.1f} GiB, more than this machine's {ram / 2**30:,.1f} GiB "
            "of RAM; lower it"
        )


def memory_train_bytes(seq_len: int, batch_size: int, hidden_dim: int, n_gaussians: int, z_dim: int) -> int:
    """Estimated bytes of the activations one MDN-RNN optimiser step keeps for backpropagation: per sequence
    step about ``2 (8 hidden_dim + 6 n_gaussians z_dim + z_dim + 8)`` float32 values (LSTM gates and states,
    mixture parameters and the loss's per-component terms, and their gradients)."""
    per_step = 2 * (8 * hidden_dim + 6 * n_gaussians * z_dim + z_dim + 8)
    return 4 * per_step * seq_len * batch_size
