"""Model-free generators, registered on import: croppaste (default), cutpaste, cutpaste-scar,
perlin (DRAEM), nsa and logical (whole components changed, for logical anomalies). Each lives in
its own module; this one only gathers them."""

from anomalyforge.synth import croppaste, cutpaste, logical, nsa, perlin  # noqa: F401  (registers)
from anomalyforge.synth.croppaste import CropPaste
from anomalyforge.synth.cutpaste import CutPaste, CutPasteScar
from anomalyforge.synth.logical import Logical
from anomalyforge.synth.nsa import NSA
from anomalyforge.synth.perlin import Perlin

__all__ = ["CropPaste", "CutPaste", "CutPasteScar", "Logical", "NSA", "Perlin"]
