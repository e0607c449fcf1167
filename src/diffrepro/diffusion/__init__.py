"""Math core: schedules, the denoiser interface and its adapters, optimal and closed-form denoisers (pure torch)."""
