"""Bringing the lab up: every node as a supervised process where `ros2 launch` is absent
(processes), and the full-stack part of the launch file (full_stack: Gazebo, Nav2, MoveIt)."""
