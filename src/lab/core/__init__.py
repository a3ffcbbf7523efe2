"""Pure domain logic: no rclpy imports anywhere under this package."""
