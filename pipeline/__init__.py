"""ivcrush: rank upcoming earnings events by volatility risk premium."""
