"""The solver: per-stream state, the batched tick, pre/post-processing (numpy and compiled), refinement, filters."""
