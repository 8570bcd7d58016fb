"""One file per solver: the CogVideoX-style sampler (stage I, single-stage) and the cross-resolution flow (stage II)."""
