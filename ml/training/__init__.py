"""Training a version: samples from stored bars (`dataset`), the training run itself
(`train_model`), the baselines every version must beat (`baselines`), the progress file the app
shows (`progress`) and the check that no feature sees the future (`check_lookahead`).

May import `ml.features` and `ml.models`.
"""
