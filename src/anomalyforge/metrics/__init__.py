"""anomalyforge.metrics"""
