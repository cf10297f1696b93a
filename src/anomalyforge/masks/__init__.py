"""anomalyforge.masks"""
