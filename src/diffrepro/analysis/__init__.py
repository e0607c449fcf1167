"""Layer 5: the analytic studies — weighted-sum degradation (NI §2) and trajectory geometry, mean shift and
memorisation (GEO §4). Pure functions on float64 tensors; the steps `study_degradation` / `study_geometry` do I/O."""
