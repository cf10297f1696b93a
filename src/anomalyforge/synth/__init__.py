"""anomalyforge.synth"""
