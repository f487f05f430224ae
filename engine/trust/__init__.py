"""What a run must be allowed before it goes on: gates, approvals and the identities, keys and
signatures behind them, the secrets policy, the journal's signed head and its audit."""
