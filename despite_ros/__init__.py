"""despite_ros: the online half of despite (ROS 2 nodes, ONNX Runtime inference, rosbag tools).

The generated interfaces live in ``despite_ros.msg``. ROS-free modules here never import torch.
"""

__version__ = "0.1.0"
