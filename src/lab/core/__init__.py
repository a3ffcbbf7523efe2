"""Pure domain logic: no rclpy imports anywhere under this package (tests/unit/test_lint.py).

One sub-package per domain; the modules at this level are the basics every domain shares.

    campaign     the science: search spaces, the planner, the closed loop, samples and
                 measurements (formulation), objectives, the campaign store
    operations   running the lab: the scheduler, workflows, reservations, the start gate, the
                 emergency stop's fast path, which batch a goal asks for
    stations     station kinds and their processes, and the emulators that answer for instruments
    robot        the lab's geometry, the robot's kinematics, navigation on a grid, traffic,
                 marker vision, the embedded simulation's world, the full stack's robot files
    config       node parameters, the node table, ROS message definitions as text

    errors       the lab's exceptions
    waits        the one polling wait
    persist      small JSON state files written atomically
"""
