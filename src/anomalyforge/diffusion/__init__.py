"""anomalyforge.diffusion"""
