"""Default CUDA schedules for the DDF kernels (placeholder, filled below)."""
