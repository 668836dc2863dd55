"""Track-seed ranges: which CarRacing-v3 tracks may inform what.

CarRacing-v3 builds its track from the seed of ``reset``, so a range of seeds is a set of tracks. A figure is
only as held out as the tracks behind it, so every stage draws from one named range:

- ``TRAINING`` [0, 900,000): collection, real-env CMA-ES rollouts, distillation, iterate rounds.
- ``MODEL_SELECTION`` [900,000, 1,000,000): the controller's real checks, held-out episodes for early stopping
  and choices between runs. (950,000..950,119 hold the episodes of the session-8 dream-fidelity figures,
  recorded after every decision and touched once. 980,000..980,004 hold 5 random-policy episodes collected in
  issue 17 for `compare-vision` on frames that no decision has used: `collect --episodes 5 --seed 980000
  --out-dir data/fresh_980000`; scored once on the shipped files, then development frames like any other.
  960,000..960,009 (the shipped ConvVAE agent, no noise) and 960,100..960,109 (random policy) are session 10's
  dream-fidelity check sets, on which its Ms were chosen; session 11 chose its Ms on them too, and every session
  since. 970,000..970,009 (the shipped DDS+VAE agent, no noise) and 970,100..970,109 (random policy) hold session
  39's held-out dream-fidelity episodes, measured once on the shipped files.)
- ``DEVELOPMENT`` [1,000,000, 2,000,000): `evaluate` while a model is being built. Tracks that informed a
  decision are development tracks from then on; a figure measured on them is a development figure.
- ``FINAL`` [7,000,000, ...): one fresh block of 100 tracks per shipped model, run once on the shipped files,
  after every decision; its per-track results are committed beside the model card. Take the next block with
  :func:`next_final_block`, then record it in ``FINAL_BLOCKS_USED``.

Seeds in [2,000,000, 7,000,000) belong to no range and are refused by `evaluate`.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import ConfigError


@dataclass(frozen=True)
class SeedRange:
    """Track seeds ``start`` .. ``stop - 1`` (``stop`` None: no upper end)."""

    name: str
    start: int
    stop: int | None

    def __contains__(self, seed: object) -> bool:
        return isinstance(seed, int) and self.start <= seed and (self.stop is None or seed < self.stop)

    def holds(self, first: int, count: int) -> bool:
        """Whether seeds ``first`` .. ``first + count - 1`` all lie in this range."""
        return count >= 1 and first in self and (first + count - 1) in self

    def __str__(self) -> str:
        end = "" if self.stop is None else f"{self.stop - 1:,}"
        return f"{self.name} tracks {self.start:,}..{end}"


@dataclass(frozen=True)
class BoundedSeedRange(SeedRange):
    """A :class:`SeedRange` with an upper end."""

    stop: int


TRAINING = BoundedSeedRange("training", 0, 900_000)
MODEL_SELECTION = BoundedSeedRange("model-selection", 900_000, 1_000_000)
DEVELOPMENT = BoundedSeedRange("development evaluation", 1_000_000, 2_000_000)
FINAL = SeedRange("final", 7_000_000, None)
FINAL_BLOCK = 100
"""Tracks per final block: one block per shipped model, touched once."""

DEVELOPMENT_USED = (
    (1_000_000, 100), (1_100_000, 20), (1_200_000, 10), (1_300_000, 100), (1_400_000, 50), (1_500_000, 100),
    (1_600_000, 100), (1_700_000, 100), (1_800_000, 100), (1_900_000, 50), (1_900_050, 100), (1_910_000, 20),
    (1_920_000, 50), (1_930_000, 20), (1_930_050, 1), (1_930_100, 5), (1_940_000, 2), (1_940_010, 1),
    (1_950_000, 30), (1_960_000, 50),
)  # fmt: skip
"""Development blocks already used, as ``(first seed, count)``: 1,000,000..099 decided among DDS+VAE
controllers and the fp16 storage; 1,100,000..019 followed the session-7 iterate rounds; 1,200,000..009 compared
session 11's dream-trained controller with the shipped one, and session 12 chose among its dream-trained
controllers (dream settings, generations, its iterate round) on them too, and session 13 its iterate round and the
fine-tuned controller; 1,300,000..099 then scored session 12's chosen one, once (a development figure: it decided
nothing); 1,400,000..049 decided session 13's ship (the new ConvVAE world model against the one shipped before);
1,500,000..099 scored session 14's controllers (two snapshots of the dream-trained one, the real-env CMA-ES one) and
the shipped one on the same tracks (development figures: nothing shipped on them); 1,600,000..099 chose between
session 15's two dream-trained controllers (tau 1.15 and 1.0), then scored session 16's four (other ways of choosing
the snapshot; none beat session 15's, so no final block was run), then session 17's two controllers trained in an
ensemble of dreams, and chose between them; 1,700,000..099 decided session 18's ship (the ensemble-trained controller
after real-env CMA-ES, that controller before it, and the shipped one, on the same tracks), and 1,700,000..049 its
DDS+VAE ship (the fine-tuned DDS+VAE M with the shipped controller and with one distilled onto it); 1,800,000..099
decided session 19's DDS+VAE ship (the distilled controller after real-env CMA-ES against it before); 1,900,000..049
scored session 20's DDS+VAE controller trained only in an ensemble of dreams (a development figure: nothing
shipped); 1,900,050..149 decided session 21's DDS+VAE world model (V fine-tuned with the slowness term, its M and a
controller distilled onto them and fine-tuned by real-env CMA-ES, against the shipped one); 1,910,000..019 scored
session 27's DDS+VAE controllers trained only in the dreams of its iterate rounds, session 28's from its CLI
iterate round, session 29's from an ensemble of two yaw-reading Ms and session 30's from ensembles of three
(development figures: nothing shipped), then sessions 32 and 33 chose their dream-only controllers on them and session
34 its controllers taught to the shipped M; 1,920,000..049 then compared session 34's taught controller (with and
without its brake, and after real-env CMA-ES) with the shipped one; 1,930,000..019 scored session 35's driver
taught to its yaw M trained on more random-policy data, beside the shipped agent (development figures: nothing
shipped); 1,930,050 was the track of its split-mode drive by key presses, and 1,930,100..104 measured the car's top
speed under full gas (no model); 1,940,000..001 were the tracks of session 39's looks at the app (split mode with the
autopilot; dream mode driven by key presses), 1,940,010 the track of session 40's look at the app from a fresh
clone; 1,950,000..029 compared the shipped ConvVAE controller with and without its brake (session 41), and 1,950,000
was the track of that session's looks at the app; 1,960,000..049 scored session 42's from-nothing controller before
and after its fine-tune (a development figure: the recipe was fixed and its final block run before), then session
43's fine-tuned with 8 tracks per candidate (after its recipe was decided and its final block run)."""
FINAL_BLOCKS_USED = {
    7_000_000: "ConvVAE world model shipped in session 7 (785.5 +- 157.2)",
    7_000_100: "session 8: the ConvVAE with the open-loop M, run once, then withdrawn (860.4 +- 108.3)",
    7_000_200: "DDS+VAE world model shipped since session 6, its one final figure (session 13: 773.0 +- 155.1)",
    7_000_300: "ConvVAE world model shipped in session 13 (816.1 +- 183.5)",
    7_000_400: "session 15: the controller trained only in the dream (tau 1.0), not shipped (643.9 +- 242.5)",
    7_000_500: "session 17: the controller trained only in an ensemble of dreams (seed 1), not shipped (827.8 +- 141.3)",
    7_000_600: "ConvVAE controller shipped in session 18: session 17's, fine-tuned by real CMA-ES (831.1 +- 145.2)",
    7_000_700: "DDS+VAE world model shipped in session 18: M fine-tuned on driving data, C distilled onto it (745.0 +- 198.3)",
    7_000_800: "DDS+VAE controller shipped in session 19: session 18's distilled C after real-env CMA-ES (793.0 +- 147.2)",
    7_000_900: "DDS+VAE world model shipped in session 22: slowness-term V, M from scratch, C distilled + CMA-ES (791.2 +- 164.3)",
    7_001_000: "DDS+VAE world model shipped in session 24: the M picked by its dream, a second CMA-ES draw for C (827.0 +- 152.5)",
    7_001_100: "DDS+VAE world model shipped in session 25: an M that reads the car's speed (816.0 +- 216.5)",
    7_001_200: "session 30: the DDS+VAE controller trained only in an ensemble of three yaw Ms' dreams, not shipped (634.0 +- 346.4)",
    7_001_300: "session 33: section 29's dream-only DDS+VAE controller trained on in the dream from its own real states (DAgger), not shipped (829.7 +- 138.0)",
    7_001_400: "session 33: the same driver after a second iterate --keep-memory round, not shipped (842.7 +- 124.0)",
    7_001_500: "DDS+VAE controller shipped in session 35: the dream-trained driver taught by DAgger, then real CMA-ES (876.9 +- 51.6)",
    7_001_600: "session 40: the ConvVAE agent of scripts/from_nothing.sh (80 generations of real-env CMA-ES), not shipped (793.1 +- 154.3)",
    7_001_700: "session 42: the ConvVAE agent of scripts/from_nothing.sh with its finetune stage, not shipped (833.9 +- 99.4)",
    7_001_800: "session 43: the same recipe with 8 tracks per fine-tune candidate, not shipped (804.2 +- 148.0)",
    7_001_900: "session 44: scripts/from_nothing.sh's finetune with no early stop, not shipped (846.5 +- 84.2)",
}
"""Final blocks already run, by first seed, with the model that used each up."""


def next_final_block() -> int:
    """First seed of the lowest final block of ``FINAL_BLOCK`` tracks that no shipped model has used."""
    start = FINAL.start
    while start in FINAL_BLOCKS_USED:
        start += FINAL_BLOCK
    return start


def check_evaluation_seeds(first: int, count: int) -> None:
    """Refuse evaluation tracks outside the development and final ranges.

    Raises:
        ConfigError: the seeds ``first`` .. ``first + count - 1`` do not all lie in one of the two ranges
            (training and model-selection tracks are not held out; 2,000,000..6,999,999 are unassigned).
    """
    if not (DEVELOPMENT.holds(first, count) or FINAL.holds(first, count)):
        raise ConfigError(
            f"evaluation seeds {first:,}..{first + count - 1:,} are not held out as they must be: they must lie "
            f"within the {DEVELOPMENT} or the {FINAL} (see core/data/seeds.py)"
        )
