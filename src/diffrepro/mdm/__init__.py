"""Multivariate linear diffusions (MDM, Singhal et al., ICLR 2023): `linear` (Q/D processes and exact float64 kernels),
`elbo` (hybrid DSM ELBO, importance time, boundary term, bits/dim), `sampling` (reverse SDE, PF-ODE), `network`
(ε-network on the extended state), `train` (joint training), `study` / `section` (glue for the pipeline steps)."""
