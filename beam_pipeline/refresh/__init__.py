"""Scheduled refreshes: versioned runs, the LATEST pointer, the drift gate."""
