"""anomalyforge.report"""
