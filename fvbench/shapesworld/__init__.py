"""ShapesWorld: a procedural video world with exact metrics and small trained cascades (see world.py, metrics.py,
models.py, train.py, evaluate.py; presets in baselines/shapesworld.yaml, suite in suites/shapesworld.yaml here (the
top-level suites/shapesworld.yaml links to it); plugin.py registers them with fvbench)."""
