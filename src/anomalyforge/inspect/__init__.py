"""anomalyforge.inspect"""
