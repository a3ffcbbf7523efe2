"""The ROS layer: rclpy helpers that the nodes, the backends and the operator's command share.

Layers (arrows point down only; tests/unit/test_lint.py enforces it):
command and benches (lab.app.cli, lab.app.session, lab.bench) -> nodes (lab.nodes) -> backends
(lab.backends) -> this layer (lab.ros) -> core (lab.core, no rclpy).

    qos          QoS profiles shared by publishers and subscribers
    clock        the simulated clock: waiting on it, holding a lockstep simulation, deadlines
    conversions  messages <-> lab.core's plain data (poses, formulations, measurements)
    actions      sending goals to action servers: one path for nodes and the commander
    params       node parameters from lab.core.config.params' models, file defaults
    main         a node executable's main
"""
