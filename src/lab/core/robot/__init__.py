"""The robot and its simulation: the lab's geometry (world), arm kinematics, grid navigation,
traffic between robots, marker vision, the embedded simulation's world (simworld) and the full
stack's per-robot files (robot_files)."""
