"""A pytest plugin (``-p tests.helpers.sqrt_plugin``) that registers the sqrt pair of
tests/helpers/sides.py, so the parity suite can run on it (``--pair sqrt``) in a subprocess."""
from parity import pairs, sides

from tests.helpers.sides import sqrt_pair

sides.register_side("sqrt", "tests.helpers.sides:SqrtSide")
sides.register_side("sqrt_buggy", "tests.helpers.sides:BuggySqrtSide")
pairs.register_pair("sqrt", sqrt_pair)
