"""anomalyforge.features: pretrained feature extractors shared by quality scoring and inspection.

`backbone`: the offline ImageNet EfficientNet-Lite / torchvision backbones as multi-level
feature extractors (`BackboneSpec`, `FeatureExtractor`, `frozen_extractor`), the one weight
loader, and image <-> tensor helpers.
"""
