"""Recipes and the rules they must satisfy: the alloy library, the recipe format, the
metallurgical validator and the history rules checked against a real wafer before each
step. Pure: no tool, no clock. The shipped recipes are in ``shipped/``."""
