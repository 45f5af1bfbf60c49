"""Inputs of the scheduler/sigma node cases whose ComfyUI outputs are in data/comfyui_sigma_nodes.json."""

SIGMAS = [14.6146, 7.0, 3.2, 1.1, 0.4, 0.0]
CASES: list[tuple[str, dict]] = [
    ("BasicScheduler", {"model": True, "scheduler": "normal", "steps": 8, "denoise": 1.0}),
    ("BasicScheduler", {"model": True, "scheduler": "karras", "steps": 10, "denoise": 0.6}),
    ("BasicScheduler", {"model": True, "scheduler": "beta", "steps": 7, "denoise": 0.0}),
    ("KarrasScheduler", {"steps": 12, "sigma_max": 14.614642, "sigma_min": 0.0291675, "rho": 7.0}),
    ("KarrasScheduler", {"steps": 5, "sigma_max": 80.0, "sigma_min": 0.002, "rho": 3.5}),
    ("ExponentialScheduler", {"steps": 9, "sigma_max": 14.614642, "sigma_min": 0.0291675}),
    ("PolyexponentialScheduler", {"steps": 9, "sigma_max": 14.614642, "sigma_min": 0.0291675, "rho": 1.7}),
    (
        "LaplaceScheduler",
        {"steps": 11, "sigma_max": 14.614642, "sigma_min": 0.0291675, "mu": 0.3, "beta": 0.6},
    ),
    ("VPScheduler", {"steps": 10, "beta_d": 19.9, "beta_min": 0.1, "eps_s": 0.001}),
    ("BetaSamplingScheduler", {"model": True, "steps": 9, "alpha": 0.5, "beta": 0.7}),
    ("SDTurboScheduler", {"model": True, "steps": 3, "denoise": 1.0}),
    ("SDTurboScheduler", {"model": True, "steps": 4, "denoise": 0.5}),
    ("AlignYourStepsScheduler", {"model_type": "SD1", "steps": 10, "denoise": 1.0}),
    ("AlignYourStepsScheduler", {"model_type": "SDXL", "steps": 17, "denoise": 0.7}),
    ("GITSScheduler", {"coeff": 1.2, "steps": 10, "denoise": 1.0}),
    ("GITSScheduler", {"coeff": 0.85, "steps": 25, "denoise": 0.5}),
    ("SplitSigmas", {"sigmas": SIGMAS, "step": 2}),
    ("SplitSigmasDenoise", {"sigmas": SIGMAS, "denoise": 0.4}),
    ("FlipSigmas", {"sigmas": SIGMAS}),
    ("SetFirstSigma", {"sigmas": SIGMAS, "sigma": 20.5}),
]
