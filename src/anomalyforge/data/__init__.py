"""anomalyforge.data"""
