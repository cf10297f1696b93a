"""anomalyforge.synth: defect image–mask synthesis.

    from anomalyforge.synth.run import generate_run  # fit + generate a run folder
    from anomalyforge.synth.export import export_run
    from anomalyforge.formats.manifest import read_manifest, write_manifest
    from anomalyforge.synth.base import available, get_generator

Model-free methods (registered by `anomalyforge.synth.model_free`): croppaste (default),
cutpaste, cutpaste-scar, perlin (DRAEM) and nsa. Diffusion methods live in their own modules.
"""
