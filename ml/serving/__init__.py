"""Serving every new bar: live scoring of the champion and the challengers (`live_scoring`), the
dual-model recommendation (`generate_recommendation`), the signals' outcomes (`outcomes`) and the
scoring worker that runs it all as bars land (`scoring_worker`).

May import `ml.features` and `ml.models`.
"""
