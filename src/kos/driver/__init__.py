"""The workload driver: power-law virtual networks, timed attachment churn, latency histograms and reports."""
