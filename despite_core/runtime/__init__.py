"""The online library: everything the live pipeline computes, without ROS and without PyTorch.

numpy, scipy, PyYAML and onnxruntime only. ``despite_ros`` (the rclpy nodes and their tools) and the
offline half (``despite eval har --model``, ``despite bench inference``, importers that need the live
perception) both import it; it imports neither ``despite_ros`` nor rclpy nor torch (tested).

- :mod:`.bundle`      the model bundle's fixed facts (format version, keys, tensor names, hashing)
- :mod:`.inference`   bundle loading and verification, ONNX Runtime sessions, the streaming encoder
- :mod:`.perception`  ROI, background, clustering, person gates, tracking, normalisation
- :mod:`.floor`       the floor plane (RANSAC): heights above it, coordinates along it
- :mod:`.person`      cluster shape features and the person / not-person classifier
- :mod:`.buffers`     frame selection by stamp, per-track windows, per-wearer IMU resampling
- :mod:`.fusion`      temporal fusion of a track's windows, activity events and alerts
- :mod:`.pipeline`    HarPipeline (scan -> window results) and WearerMatcher
- :mod:`.scoring`     the fixed scoring rules (ground truth, window scoreboard, segments, alerts)
"""
