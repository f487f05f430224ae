"""What people look at: the board, drift, the analysis checks' views and the text, markdown
and HTML presenters of plans, runs and change records, and the board's server."""
