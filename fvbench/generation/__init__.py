"""Video generation: stages, samplers, models and presets.

The FlashVideo cascade and a single-stage DiT are the same machinery: a :class:`~fvbench.generation.generator.Generator`
runs an ordered list of :class:`~fvbench.generation.stages.StageConfig`. This package knows nothing of the store,
the metrics or the report.
"""
