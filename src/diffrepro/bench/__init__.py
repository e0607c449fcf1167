"""`diffrepro bench X` commands: each prints figures (throughput, memory) and asserts nothing."""
