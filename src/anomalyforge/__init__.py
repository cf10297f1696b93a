"""anomalyforge: few-shot defect image–mask synthesis and an honest downstream benchmark."""

__version__ = "0.3.0"
