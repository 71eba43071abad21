"""The data contract: data-root layout, schemas, store, config, the trading calendar and file safety."""
