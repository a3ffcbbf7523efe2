"""One rclpy node per module; thin wrappers over lab.core."""
