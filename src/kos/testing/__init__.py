"""Shipped fakes and harnesses for tests and benchmarks: never imported by production code."""
