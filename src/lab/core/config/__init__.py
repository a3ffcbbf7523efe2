"""Configuration: every node's parameters (params), the node table the launch file and `lab
bringup` expand (nodetable), and ROS message definitions as text for recordings (msgdefs)."""
