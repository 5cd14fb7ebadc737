"""The storm emulator: the capture side of Tormenta (client source -> binarizer -> producer -> topic).

    python -m pipeline emulate --preset Christmas          # a long-lived emulator process
    python -m pipeline storm set --rate 20000               # steer it from anywhere
    python -m pipeline storm pause|resume|stop|status

Modules: `sources` (ClientSource protocol, EmulatorSource, FileReplaySource), `binarizer`
(contract JSON, fault injection), `producer` (idempotent counted producer), `pacing`
(drift-free rate control), `presets` (profiles and presets), `control` (desired state on a
compacted topic, status topic), `storm` (the loop), `cli`. See docs/EMULATOR.md.
"""

from pipeline.emulator.presets import PRESETS, PROFILES

__all__ = ["PRESETS", "PROFILES"]
