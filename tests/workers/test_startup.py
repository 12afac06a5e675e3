"""The deployment's start-up steps (`workers.startup`), as planned for each configuration."""

from __future__ import annotations

import pytest

from config.settings import load_settings
from workers.startup import FIRST_MODEL, steps

pytestmark = pytest.mark.no_db


def modules(plan) -> list[str]:
    return [s.args[1] for s in plan]


def test_the_demo_seeds_simulated_history_and_context_on_the_embedded_server():
    settings = load_settings(market_source="simulated", news_source="simulated", sim_history_days=9)
    plan = steps(settings, database_url_set=False)
    assert modules(plan) == [
        "db.embedded",
        "db.migrate",
        "workers.seed_history",
        "workers.seed_context",
    ]
    assert plan[2].args[-2:] == ("--days", "9")
    assert all(s.required for s in plan)


def test_real_data_seeds_yahoo_history_and_fetches_macro_without_stopping_on_it():
    settings = load_settings(market_source="yfinance", news_source="rss", macro_source="fred")
    plan = steps(settings, database_url_set=True)  # the container: DATABASE_URL is set
    assert modules(plan) == ["db.migrate", "workers.seed_history", "workers.macro_ingestor"]
    assert "yfinance" in plan[1].title
    assert not plan[2].required  # FRED down must not keep the workbench from starting


def test_the_first_model_is_gated_and_a_short_holdout_does_not_stop_the_start():
    assert FIRST_MODEL.args == ("-m", "ml.lifecycle.pipeline", "--quick")
    assert not FIRST_MODEL.required and 4 in FIRST_MODEL.ok_codes
