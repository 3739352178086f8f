"""The application layer: command-line verbs (``cli``, the ``dynfilter-tvm`` entry), the demo,
the benchmark harness, workload recording for tuning and AOT bundles, and FLOP counting.
No library module imports it."""
