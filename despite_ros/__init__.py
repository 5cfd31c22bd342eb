"""despite_ros: the online half's ROS 2 side: the rclpy nodes (``despite_ros.nodes``), bringup, the
demo, live scoring over DDS, the bag tools (``despite-ros bag-eval``) and the ``despite-ros`` CLI.

Everything they compute (bundle loading, ONNX Runtime inference, perception, buffers, pipeline,
scoring) is the ROS-free, torch-free library :mod:`despite_core.runtime`; this package only glues it
to ROS. The generated interfaces live in ``despite_ros.msg``.
"""

__version__ = "0.1.0"
