"""What a model sees: the batch features (`feature_engineering`), the same features kept live
bar by bar (`live_price_state`, `live_features`), input windows and their scaler (`windows`),
triple-barrier labels (`labels`) and the drift statistics of features (`drift`).

Imports nothing else of `ml`: everything above builds on it.
"""
