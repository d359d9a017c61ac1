"""Reads that only the console's pages need, one module per area; the apps' own selectors come first."""
