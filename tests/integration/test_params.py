"""A node's parameters from its model (lab.ros.params): defaults once, checked at start-up and on set."""

from __future__ import annotations

import pytest

from lab.core.errors import ConfigError


def test_node_declares_its_model_checks_it_at_start_and_refuses_bad_sets(rclpy_context) -> None:
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    from lab.core.config.params import StationParams
    from lab.ros.params import declare_params

    node = Node("station_params_probe", context=rclpy_context,
                parameter_overrides=[Parameter("fault_probability", value=0.25)])
    try:
        params = declare_params(node, StationParams)
        assert params.fault_probability == 0.25 and params.fail_next == StationParams().fail_next
        assert node.get_parameter("status_period").value == StationParams().status_period  # the model's default

        refused = node.set_parameters([Parameter("fault_probability", value=1.5)])[0]
        assert not refused.successful and "fault_probability" in refused.reason and "1.5" in refused.reason
        assert params.fault_probability == 0.25 and node.get_parameter("fault_probability").value == 0.25

        accepted = node.set_parameters([Parameter("fail_next", value=3)])[0]
        assert accepted.successful and params.fail_next == 3  # the model follows the change

        # what points the node elsewhere, or its clock, is read-only while it runs (issue 33)
        for name, value in (("processes_file", "/tmp/other.yaml"), ("station_name", "other"),
                            ("use_sim_time", False)):
            before = node.get_parameter(name).value
            refused = node.set_parameters([Parameter(name, value=value)])[0]
            assert not refused.successful and f"{name}: read-only while the node runs" in refused.reason, name
            assert node.get_parameter(name).value == before
    finally:
        node.destroy_node()


def test_bad_value_at_start_names_node_and_key(rclpy_context) -> None:
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    from lab.core.config.params import LabManagerParams
    from lab.ros.params import declare_params

    node = Node("lab_manager_probe", context=rclpy_context,
                parameter_overrides=[Parameter("max_retries", value=-5)])
    try:
        with pytest.raises(ConfigError) as err:
            declare_params(node, LabManagerParams)
        assert "/lab_manager_probe" in str(err.value) and "max_retries" in str(err.value)
        assert "-5" in str(err.value)
    finally:
        node.destroy_node()


def test_empty_list_parameters_take_the_models_default(rclpy_context) -> None:
    """rclpy cannot type an empty list: such fields are declared typed and unset, and read as
    the model's default; a value from the command line still arrives."""
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    from lab.core.config.params import NavigatorParams
    from lab.ros.params import declare_params

    plain = Node("nav_probe_a", context=rclpy_context)
    given = Node("nav_probe_b", context=rclpy_context,
                 parameter_overrides=[Parameter("robots", value=["robot1", "robot2"])])
    try:
        assert declare_params(plain, NavigatorParams).robots == []
        assert declare_params(given, NavigatorParams).robots == ["robot1", "robot2"]
    finally:
        plain.destroy_node()
        given.destroy_node()
