"""The studies' computations (NI §3.2 degradation, GEO trajectory geometry): rows and arrays from data and denoisers,
no file paths. Their report sections are built in `diffrepro.reports.degradation` / `diffrepro.reports.geometry`."""
