"""Data: the sequence store, numpy-only building blocks shared with the ROS half, importers and
the synthetic world. Nothing here imports torch or rclpy."""
