"""anomalyforge.quality"""
