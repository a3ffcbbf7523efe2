"""A ROS 2 package set for a mobile robotic chemist (after Burger et al., Nature 2020)."""

__version__ = "0.1.0"
