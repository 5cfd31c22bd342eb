"""despite_core: the offline half of despite (data, synthetic world, importers, training).

Importing this package (and its numpy-only modules in ``despite_core.data``) must stay cheap and
must never pull in torch or rclpy: the online half (``despite_ros``) reuses those modules on robots
that have neither.
"""

__version__ = "0.1.0"
