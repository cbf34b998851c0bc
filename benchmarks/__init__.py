"""Benchmarks: latency and accuracy parity measured side by side."""
