import pandas as pd
import pytest

from pipeline.sources.synthetic import SyntheticMarket

AS_OF = pd.Timestamp("2026-11-20")


@pytest.fixture(scope="session")
def market():
    return SyntheticMarket(seed=7, universe_size=500)
